"""Media: attachments downloaded safely and checked (`fetcher.py` with `addresses.py`, `validation.py`
with `images.py`), the worker's `pipeline.py` from pending to stored, rejected or failed, operator
queries (`attachments.py`), outbound uploads (`uploads.py`) and the signed links to both (`links.py`)."""
