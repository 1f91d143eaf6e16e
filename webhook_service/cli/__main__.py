"""`python -m webhook_service.cli`: the same as the `webhook-service` command."""

from webhook_service.cli.main import main

main()
