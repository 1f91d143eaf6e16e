"""The outbound media-upload API of seeds 000/001.

POST /api/v1/media          upload a file, get back a signed URL to put in `mediaUrls` (201)
GET /api/v1/media/<id>      the upload's metadata with a fresh signed URL
DELETE /api/v1/media/<id>   revoke: the blob is deleted, so its URLs stop working (204)
GET /m/<id>?sig=...         the upload's stable URL: a redirect to a fresh signed URL (302; 410 once deleted)

Uploads are checked exactly as inbound attachments are (webhook_service.media.validation), scoped to the
caller's tenant (another tenant's upload is a 404), and logged one line each. URL variables are named
as the OpenAPI document names them (api/media_models.py has the models it is generated from).
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from storage import SignedUrl
from webhook_service.api.auth import ApiAuthenticator, Principal, current_principal
from webhook_service.api.errors import ApiError, api_error, outage_error
from webhook_service.api.media_models import MediaPath
from webhook_service.api.parameters import validated
from webhook_service.api.upload_body import (
    CONVERT_FIELD,
    SizeLimits,
    UploadBody,
    max_body_bytes,
    parse_flag,
    read_json_upload,
    read_multipart_upload,
    too_large,
)
from webhook_service.api.upload_fields import UploadFields, check_upload_fields
from webhook_service.config.model import Settings
from webhook_service.database.tables import MediaUpload
from webhook_service.media import scratch
from webhook_service.media.links import MediaLinks
from webhook_service.media.uploads import MediaUploads, StoredUpload
from webhook_service.media.validation import MediaRejected, canonical_content_type
from webhook_service.model.message_json import iso
from webhook_service.model.phone import mask
from webhook_service.observability import metrics
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.media_api")

_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DISCARD_CHUNK_BYTES = 256 * 1024
# MediaRejected codes (validation.py) as answers. Pixel limits and undecodable images are neither too
# large a payload nor an unsupported type: the request was understood and the file cannot be used.
_REJECTIONS = {
    "empty": (400, "empty_file"),
    "too_large": (413, "payload_too_large"),
    "type_not_allowed": (415, "unsupported_media_type"),
    "image_too_large": (422, "image_too_large"),
    "image_unreadable": (422, "image_unreadable"),
}


def media_api_blueprint(
    uploads: MediaUploads, links: MediaLinks, auth: ApiAuthenticator, settings: Settings, *, work_dir: Path
) -> Blueprint:
    """`work_dir` holds uploads while they are read and checked (on the local store's filesystem, so a
    checked file is renamed into place rather than copied)."""
    blueprint = Blueprint("media_api", __name__)
    limits = SizeLimits.for_policy(uploads.policy)

    @blueprint.post("/api/v1/media")
    @_body_capped(limits)
    @auth.required
    def upload_media() -> Response:
        principal = current_principal()
        started = time.monotonic()
        attempt = _Attempt()
        work: Path | None = None
        outcome, status = "internal_error", 500
        try:
            work = scratch.make_directory(work_dir, "upload-")
            stored = _receive_upload(uploads, settings, limits, principal, work, attempt)
            outcome, status = "stored", 201
        except Exception as error:
            outcome, status = _outcome_of(error)
            raise
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            _log_upload(principal, attempt, outcome, status, started)
        response = jsonify(_upload_json(links, stored.upload, stored.url))
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/media/{stored.upload.id}"
        return response

    @blueprint.get("/api/v1/media/<mediaId>")
    @auth.required
    def get_media(**path_values: str) -> Response:
        upload = _own_live_upload(uploads, validated(MediaPath, path_values).media_id)
        return jsonify(_upload_json(links, upload, links.upload_url(upload)))

    @blueprint.delete("/api/v1/media/<mediaId>")
    @auth.required
    def delete_media(**path_values: str) -> Response:
        upload = _own_live_upload(uploads, validated(MediaPath, path_values).media_id)
        if not uploads.revoke(upload):
            raise _not_found()
        log(
            logger,
            "media_upload_revoked",
            upload_id=upload.id,
            tenant=upload.tenant_id,
            principal_kind=current_principal().kind,
        )
        return Response(status=204)

    @blueprint.route("/m/<mediaId>", methods=["GET", "HEAD"])
    def follow_stable_url(**path_values: str) -> BaseResponse:
        """No credentials: the signature is the permission, as with any signed URL."""
        upload_id = validated(MediaPath, path_values).media_id
        # A repeated parameter is ambiguous (which one was signed?): refuse rather than pick one.
        repeated = any(len(values) > 1 for values in request.args.listvalues())
        if repeated or not _UPLOAD_ID.fullmatch(upload_id) or not links.verify_stable_link(upload_id, request.args):
            return _invalid_link()
        upload = uploads.find(upload_id)
        if upload is None:
            raise _not_found()
        if upload.revoked_at is not None:
            return api_error(410, "gone", "This media was deleted.")
        if links.stable_lifetime_over(upload):
            return _invalid_link()
        response = redirect(links.redirect_target(upload).url, 302)
        # The target expires; every visit must come back here for a fresh one.
        response.headers["Cache-Control"] = "no-store"
        return response

    return blueprint


# Upload ------------------------------------------------------------------------------------------------


def _body_capped(limits: SizeLimits) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Caps this endpoint's request body (webhooks keep their own 1 MiB cap), and before an error answer
    reads and discards whatever the client is still sending: clients that send the whole body before
    reading the answer (requests, HttpClient, axios) would otherwise see a reset connection instead of
    the error. The cap bounds that reading; a body announced larger than the cap is not read at all."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            # The plain cap first: it holds even when the query's convert flag is malformed (a 400).
            request.max_content_length = max_body_bytes(limits.plain)
            try:
                if _convert_in_query():
                    request.max_content_length = max_body_bytes(limits.converting)
                response = view(*args, **kwargs)
            except Exception:
                _discard_unread_body()
                raise
            if response.status_code >= 400:
                _discard_unread_body()
            return response

        return wrapper

    return decorate


def _convert_in_query() -> bool:
    value = request.args.get(CONVERT_FIELD)
    return parse_flag(CONVERT_FIELD, value) if value is not None else False


def _discard_unread_body() -> None:
    try:
        stream = request.stream
        while stream.read(_DISCARD_CHUNK_BYTES):
            pass
    except (RequestEntityTooLarge, BadRequest, OSError):
        pass  # over the cap, or the client went away: the connection closes after the answer


@dataclass
class _Attempt:
    """What is known about an upload so far, for its log line."""

    body: UploadBody | None = None
    fields: UploadFields | None = None
    stored: StoredUpload | None = None


def _receive_upload(
    uploads: MediaUploads, settings: Settings, limits: SizeLimits, principal: Principal, work: Path, attempt: _Attempt
) -> StoredUpload:
    source = work / "upload"
    attempt.body = body = _read_body(limits, source)
    tenant = settings.tenant(principal.tenant_id)
    assert tenant is not None  # settings validation ties every API user and key to a configured tenant
    attempt.fields = fields = check_upload_fields(body, tenant, region=settings.phone_default_region)
    try:
        checked = uploads.check(
            source,
            declared_content_type=fields.declared_content_type,
            convert=body.convert,
            source_sha256=body.sha256,
            workdir=work,
        )
    except MediaRejected as rejection:
        status, code = _REJECTIONS.get(rejection.code, (422, rejection.code))
        raise ApiError(status, code, rejection.message) from None
    attempt.stored = uploads.store(
        checked,
        file_name=fields.file_name,
        number=fields.number,
        converted=body.convert,
        tenant_id=principal.tenant_id,
        created_by=principal.name,
    )
    return attempt.stored


def _read_body(limits: SizeLimits, source: Path) -> UploadBody:
    convert = _convert_in_query()
    try:
        if request.mimetype == "multipart/form-data":
            form, files = _multipart_parts(source.parent)
            try:
                return read_multipart_upload(form, files, source, limits=limits, convert=convert)
            finally:
                for part in files.values():
                    part.close()
        # Any other type is read as JSON (curl -d without -H says form-urlencoded): a body that is not
        # JSON gets a 400 that says so.
        return read_json_upload(request.stream, source, limits=limits, convert=convert)
    except RequestEntityTooLarge:
        raise too_large(limits.file_limit(convert)) from None
    except BadRequest as error:  # the client went away mid-body, or sent malformed chunked framing
        raise ApiError(400, "invalid_body", error.description or "The body could not be read.") from None


def _multipart_parts(work: Path) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    """The fields and file parts of a multipart body, as `request.form` and `request.files` give them, but
    with each file part spooled to a scratch file in `work`: werkzeug's own spooling wrote it to the
    system's temporary directory, where a full disk was a bare OSError and so a 500, and outside the
    upload's cleanup. Here a full disk is ScratchSpaceUnavailable, answered 503 like every storage outage."""
    parser = request.make_form_data_parser()
    parser.stream_factory = lambda *_args, **_kwargs: scratch.create_unique(work, "part-", "")[1]
    body = _BodyStream(request.stream)
    try:
        # The parser only calls read() on its stream.
        _, form, files = parser.parse(
            cast(IO[bytes], body), request.mimetype, request.content_length, request.mimetype_params
        )
    except RequestEntityTooLarge:
        if body.over_cap:
            raise  # the body itself: the file is too large
        # The parser's own limits, whatever the file's size: a field of text too long, or too many parts.
        raise ApiError(
            413,
            "payload_too_large",
            f"A form field other than the file is over {request.max_form_memory_size:,} bytes, "
            f"or the form has more than {request.max_form_parts:,} parts.",
        ) from None
    return form, files


class _BodyStream:
    """The request body as the form parser reads it, noting whether the body's own size cap stopped it
    (werkzeug raises the same RequestEntityTooLarge for that and for its form limits)."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self.over_cap = False

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except RequestEntityTooLarge:
            self.over_cap = True
            raise


def _outcome_of(error: Exception) -> tuple[str, int]:
    """The upload's outcome for its log line, as the app's error handlers will answer it."""
    if isinstance(error, ApiError):
        return error.code, error.status
    outage = outage_error(error)
    return (outage.code, outage.status) if outage else ("internal_error", 500)


def _log_upload(principal: Principal, attempt: _Attempt, outcome: str, status: int, started: float) -> None:
    metrics.UPLOADS.labels(outcome).inc()
    body, fields, stored = attempt.body, attempt.fields, attempt.stored
    upload = stored.upload if stored else None
    log(
        logger,
        "media_upload",
        logging.WARNING if status >= 500 else logging.INFO,
        outcome=outcome,
        status=status,
        tenant=principal.tenant_id,
        principal_kind=principal.kind,
        upload_id=upload.id if upload else None,
        phone=mask(fields.number.number) if fields else None,
        encoding=body.encoding if body else None,
        convert=body.convert if body else None,
        received_bytes=body.size if body and body.has_file else None,
        declared_type=fields.declared_content_type if fields else None,
        content_type=upload.content_type if upload else None,
        size=upload.size if upload else None,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )


# Metadata and revocation ----------------------------------------------------------------------------------


def _own_live_upload(uploads: MediaUploads, upload_id: str) -> MediaUpload:
    upload = (
        uploads.find(upload_id, tenant_id=current_principal().tenant_id) if _UPLOAD_ID.fullmatch(upload_id) else None
    )
    if upload is None or upload.revoked_at is not None:
        raise _not_found()
    return upload


def _invalid_link() -> Response:
    return api_error(403, "forbidden", "This media link is invalid or has expired.")


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such media upload.")


# Shared ------------------------------------------------------------------------------------------------


def _upload_json(links: MediaLinks, upload: MediaUpload, url: SignedUrl) -> dict[str, Any]:
    stable = links.stable_url(upload)
    return {
        "id": upload.id,
        # The same signed URL twice: seed 001's clients read `uri`, seed 000's read `url`.
        "uri": url.url,
        "url": url.url,
        "expiresAt": iso(url.expires_at),
        "stableUrl": stable.url,
        "stableUrlExpiresAt": iso(stable.expires_at),
        "fileName": upload.file_name,
        # Both names of the stored (sniffed) type, as each seed calls it.
        "contentType": upload.content_type,
        "mimeType": upload.content_type,
        "declaredContentType": upload.declared_content_type,
        "size": upload.size,
        "sha256": upload.sha256,
        "phoneNumber": upload.phone_number,
        "phoneNumberId": upload.phone_number_id,
        "tenantId": upload.tenant_id,
        "createdAt": iso(upload.created_at),
        "warnings": _warnings(upload),
    }


def _warnings(upload: MediaUpload) -> list[str]:
    declared = upload.declared_content_type
    if declared and canonical_content_type(declared) != upload.content_type:
        return [
            f"The declared type {declared} differs from the stored type {upload.content_type}, "
            "which is what the URL serves."
        ]
    return []
