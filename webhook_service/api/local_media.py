"""GET/HEAD /media/<key>: the local blob store's signed URLs, served by this service.

The URL's HMAC covers the path, the expiry and every response override, checked in constant time;
an expired or altered URL is a 403. Stored media is served as inert content: the sniffed type,
`nosniff`, a download disposition for anything not image/audio/video, and a CSP that sandboxes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, request, send_file
from werkzeug.http import parse_range_header

from storage import BlobNotFound, BlobStore, LocalBlobStore, StorageUnavailable, content_disposition, disposition_for
from webhook_service.api.errors import api_error

# Local-store URLs are served by this service under this path.
LOCAL_MEDIA_PREFIX = "/media/"
SANDBOX_POLICY = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"


def local_media_blueprint(store: BlobStore) -> Blueprint:
    blueprint = Blueprint("local_media", __name__)

    @blueprint.route(LOCAL_MEDIA_PREFIX + "<path:key>", methods=["GET", "HEAD"])
    def serve(key: str) -> Response:
        if not isinstance(store, LocalBlobStore):
            return api_error(404, "not_found", "Media is served by the configured blob store, not here.")
        # A repeated parameter is ambiguous (which one was signed?): refuse rather than pick one.
        repeated = any(len(values) > 1 for values in request.args.listvalues())
        signed = None if repeated else store.verify_signed_request(key, request.args)
        if signed is None:
            return api_error(403, "forbidden", "This media link is invalid or has expired.")
        info = store.head(key)
        if info is None:
            return _no_such_media()  # deleted (revoked) or never stored
        content_type = signed.content_type or info.content_type
        if not _one_byte_range(request.headers.get("Range")):
            # werkzeug refuses (416) every Range it cannot serve as one byte range. HTTP says to ignore one
            # in a unit the server does not know and lets it ignore the rest (several ranges, a malformed
            # one): the whole file is the answer, as a client that asked for a part can use it.
            request.environ.pop("HTTP_RANGE", None)
        try:
            # send_file looks at the file again, for its size and then to open it: a revocation can
            # remove it between any two of these steps.
            response = send_file(store.path(key), mimetype=content_type, conditional=True, etag=True, max_age=None)
        except (BlobNotFound, FileNotFoundError):
            return _no_such_media()
        except OSError as error:
            raise StorageUnavailable(f"cannot read {key!r}: {error}") from error
        # Only image/audio/video may be shown inline, whatever the URL asked for.
        disposition = signed.disposition if disposition_for(content_type) == "inline" else "attachment"
        response.headers["Content-Disposition"] = content_disposition(disposition, signed.filename)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = SANDBOX_POLICY
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        remaining = int((signed.expires_at - datetime.now(UTC)).total_seconds())
        response.headers["Cache-Control"] = f"private, max-age={max(0, remaining)}"
        return response

    return blueprint


def _no_such_media() -> Response:
    return api_error(404, "not_found", "No such media.")


def _one_byte_range(value: str | None) -> bool:
    if value is None:
        return True
    parsed = parse_range_header(value)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1
