"""The links an upload is reached by.

- The signed URL (`url`/`uri`): straight from the blob store (the local store's is served by this
  service, S3's is presigned, Azure's a read-only SAS), living `upload_url_ttl_seconds`, which S3 and
  Azure user-delegation SAS cap at 7 days.
- The stable URL (`stableUrl`): `/m/<upload id>?sig=...` on this service, an HMAC of the id (and of its
  expiry, when one is configured) with the service's secret key. It answers with a redirect to a fresh
  short-lived signed URL, so it outlives any backend cap, and it stops working when the upload is
  deleted, which a long-lived SAS could not.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import urlencode

from storage import SignedUrl

from ..media_links import absolute, disposition_for, url_ttl
from ..models import MediaUpload
from ..runtime import Runtime

STABLE_URL_PREFIX = "/m/"
# Bound into every signature, so a MAC made with the same key for another purpose never passes here.
_PURPOSE = "media-upload.stable-url/v1"
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded base64url of 32 bytes
_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")


@dataclasses.dataclass(frozen=True)
class StableUrl:
    url: str
    expires_at: datetime | None  # None: until the upload is deleted


def upload_url_ttl(runtime: Runtime, tenant_id: str) -> int:
    tenant = runtime.settings.tenant(tenant_id)
    if tenant and tenant.upload_url_ttl_seconds:
        return tenant.upload_url_ttl_seconds
    return runtime.settings.storage.upload_url_ttl_seconds


def signed_upload_url(runtime: Runtime, upload: MediaUpload, *, ttl: int | None = None) -> SignedUrl:
    """A signed URL for the stored file; `ttl` defaults to the tenant's upload URL lifetime."""
    signed = runtime.blob_store.signed_url(
        upload.blob_key, expires_in=ttl or upload_url_ttl(runtime, upload.tenant_id), filename=upload.file_name,
        content_type=upload.content_type, disposition=disposition_for(upload.content_type))
    return dataclasses.replace(signed, url=absolute(runtime, signed.url))


def redirect_target(runtime: Runtime, upload: MediaUpload) -> SignedUrl:
    """Where the stable URL sends a client: a signed URL of the ordinary, short media URL lifetime; it
    only has to last until the client follows the redirect."""
    return signed_upload_url(runtime, upload, ttl=url_ttl(runtime, upload.tenant_id))


def stable_url(runtime: Runtime, upload: MediaUpload) -> StableUrl:
    """The same URL every time it is asked for: its expiry, when configured, counts from the upload."""
    lifetime = runtime.settings.storage.upload_stable_url_ttl_seconds
    expires = int(upload.created_at.timestamp()) + lifetime if lifetime else None
    query = {"expires": str(expires)} if expires else {}
    query["sig"] = _signature(runtime.secret_key, upload.id, expires)
    url = absolute(runtime, f"{STABLE_URL_PREFIX}{upload.id}?{urlencode(query)}")
    expires_at = datetime.fromtimestamp(expires, timezone.utc) if expires else None
    return StableUrl(url, expires_at)


def verify_stable_link(runtime: Runtime, upload_id: str, query: Mapping[str, str],
                       now: float | None = None) -> bool:
    """Whether the query signs this upload id and has not expired. Never raises on what a client sends."""
    signature = query.get("sig")
    expires_text = query.get("expires")
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        return False
    if expires_text is not None and not _EXPIRES.fullmatch(expires_text):
        return False
    expires = int(expires_text) if expires_text is not None else None
    expected = _signature(runtime.secret_key, upload_id, expires)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        return False
    return expires is None or (time.time() if now is None else now) < expires


def _signature(secret_key: bytes, upload_id: str, expires: int | None) -> str:
    # JSON keeps the fields apart (nothing moves from the id into the expiry) and, escaping every
    # non-ASCII character, turns any id a client puts in the path into bytes.
    message = json.dumps([_PURPOSE, upload_id, expires], separators=(",", ":"))
    digest = hmac.new(secret_key, message.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
