"""The HTTP APIs for consumers and clients: the read API (`messages.py`, its parameters in
`read_params.py`), the media upload API (`media.py` with `upload_body.py`, `json_stream.py`,
`upload_fields.py`, its parameters and bodies in `media_models.py`), the local store's signed media URLs
(`local_media.py`), authentication (`auth.py`), the error shape (`errors.py`), parameter models and
their errors (`parameters.py`), and the OpenAPI document (`openapi.py`, built by `openapi_document.py`
from those models and `response_models.py`) with its Swagger UI page (`docs_page.py`)."""
