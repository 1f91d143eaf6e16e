"""The database, the service's source of truth: engines and group commit (`engine.py`), the tables
(`tables.py`), the ordered event feed (`feed.py`) and schema migrations (`migrate.py`, `migrations/`)."""
