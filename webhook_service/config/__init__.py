"""The configuration: its schema (`model.py`), where values come from (`sources.py`), the development
defaults (`development.py`) and the lookup of connections by webhook URL (`connections.py`).
Nothing here knows the provider adapters; `webhook_service.settings` puts the two together."""
