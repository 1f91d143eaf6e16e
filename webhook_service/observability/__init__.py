"""What operators watch: structured JSON logs (`logs.py`), Prometheus metrics (`metrics.py`) and the
health endpoints (`health.py`)."""
