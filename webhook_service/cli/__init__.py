"""The command line, `webhook-service` (`main.py`, which loads each command's module on first use)."""
