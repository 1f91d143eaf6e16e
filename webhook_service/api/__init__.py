"""The HTTP APIs for consumers and clients: the read API (`messages.py`), the media upload API (`media.py`
with `upload_body.py`, `json_stream.py`, `upload_fields.py`), the local store's signed media URLs
(`local_media.py`), authentication (`auth.py`), the error shape (`errors.py`) and the OpenAPI document
(`openapi.py`)."""
