"""The links stored media is reached by, made at read time (they expire, so they are never stored).

- A signed URL straight from the blob store: the local store's is served by this service
  (/media/<key>), S3's is presigned, Azure's a read-only SAS. Received attachments' live
  `storage.url_ttl_seconds` (per tenant `media_url_ttl_seconds`); an upload's `url`/`uri` lives
  `upload_url_ttl_seconds`, which S3 and Azure user-delegation SAS cap at 7 days.
- An upload's stable URL (`stableUrl`): `/m/<upload id>?sig=...` on this service, signed with the
  service's secret key over the id (and its expiry, when one is configured). It answers with a redirect
  to a fresh short-lived signed URL, so it outlives any backend cap, and it stops working when the
  upload is deleted, which a long-lived SAS could not.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import has_request_context, request

from storage import BlobStore, SignedUrl, disposition_for
from storage.signing import UrlSigner
from webhook_service.config.model import Settings
from webhook_service.database.tables import Attachment, MediaUpload
from webhook_service.model.message_json import file_name

STABLE_URL_PREFIX = "/m/"
# The query parameters that make a URL this service signs work: the local store's `signature`
# (storage/local.py) and a stable URL's `sig`. Whoever reads one can fetch the file, so logs hide them.
SIGNATURE_QUERY_PARAMS = frozenset({"signature", "sig"})
# Bound into every stable URL's signature, so a MAC made with the same key for another purpose never passes.
_STABLE_URL_PURPOSE = "media-upload.stable-url/v1"
_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")


@dataclasses.dataclass(frozen=True)
class StableUrl:
    url: str
    expires_at: datetime | None  # None: until the upload is deleted


class MediaLinks:
    def __init__(self, blob_store: BlobStore, settings: Settings, secret_key: bytes):
        self._blob_store = blob_store
        self._settings = settings
        self._stable_signer = UrlSigner(secret_key, _STABLE_URL_PURPOSE)

    # Lifetimes -----------------------------------------------------------------------------------------
    def url_ttl(self, tenant_id: str) -> int:
        tenant = self._settings.tenant(tenant_id)
        if tenant and tenant.media_url_ttl_seconds:
            return tenant.media_url_ttl_seconds
        return self._settings.storage.url_ttl_seconds

    def upload_url_ttl(self, tenant_id: str) -> int:
        tenant = self._settings.tenant(tenant_id)
        if tenant and tenant.upload_url_ttl_seconds:
            return tenant.upload_url_ttl_seconds
        return self._settings.storage.upload_url_ttl_seconds

    # Signed URLs ---------------------------------------------------------------------------------------
    def signed_blob_url(self, *, blob_key: str, content_type: str | None, filename: str | None, ttl: int) -> SignedUrl:
        """A SignedUrl (absolute url + expiry) for one stored object."""
        signed = self._blob_store.signed_url(
            blob_key,
            expires_in=ttl,
            filename=filename,
            content_type=content_type,
            disposition=disposition_for(content_type),
        )
        return dataclasses.replace(signed, url=self.absolute(signed.url))

    def attachment_url(self, attachment: Attachment) -> str | None:
        """A stored attachment's signed URL; None until it is stored."""
        if attachment.status != "stored" or not attachment.blob_key:
            return None
        return self.signed_blob_url(
            blob_key=attachment.blob_key,
            content_type=attachment.content_type,
            filename=file_name(attachment),
            ttl=self.url_ttl(attachment.tenant_id),
        ).url

    def upload_url(self, upload: MediaUpload, *, ttl: int | None = None) -> SignedUrl:
        """An upload's signed URL; `ttl` defaults to the tenant's upload URL lifetime."""
        return self.signed_blob_url(
            blob_key=upload.blob_key,
            content_type=upload.content_type,
            filename=upload.file_name,
            ttl=ttl or self.upload_url_ttl(upload.tenant_id),
        )

    def redirect_target(self, upload: MediaUpload) -> SignedUrl:
        """Where the stable URL sends a client: a signed URL of the ordinary, short media URL lifetime; it
        only has to last until the client follows the redirect."""
        return self.upload_url(upload, ttl=self.url_ttl(upload.tenant_id))

    # Stable URLs ---------------------------------------------------------------------------------------
    def stable_url(self, upload: MediaUpload) -> StableUrl:
        """The same URL every time it is asked for: its expiry, when configured, counts from the upload."""
        lifetime = self._settings.storage.upload_stable_url_ttl_seconds
        expires = int(upload.created_at.timestamp()) + lifetime if lifetime else None
        query = {"expires": str(expires)} if expires else {}
        query["sig"] = self._stable_signer.sign(upload.id, expires)
        url = self.absolute(f"{STABLE_URL_PREFIX}{upload.id}?{urlencode(query)}")
        expires_at = datetime.fromtimestamp(expires, UTC) if expires else None
        return StableUrl(url, expires_at)

    def verify_stable_link(self, upload_id: str, query: Mapping[str, str], now: float | None = None) -> bool:
        """Whether the query signs this upload id and has not expired. Never raises on what a client sends."""
        expires_text = query.get("expires")
        if expires_text is not None and not _EXPIRES.fullmatch(expires_text):
            return False
        expires = int(expires_text) if expires_text is not None else None
        if not self._stable_signer.verify(query.get("sig"), upload_id, expires):
            return False
        return expires is None or (time.time() if now is None else now) < expires

    def stable_lifetime_over(self, upload: MediaUpload, now: float | None = None) -> bool:
        """Whether the configured stable URL lifetime, counted from the upload, has passed. A link's own
        expiry is what it was signed with; this holds links made before the lifetime was configured (they
        have none) or shortened to the lifetime configured now."""
        lifetime = self._settings.storage.upload_stable_url_ttl_seconds
        if not lifetime:
            return False
        return (time.time() if now is None else now) >= upload.created_at.timestamp() + lifetime

    # Helpers -------------------------------------------------------------------------------------------
    def absolute(self, url: str) -> str:
        """Local-store URLs are relative to this service; give them the public origin."""
        if "://" in url:
            return url
        if self._settings.public_base_url:
            return self._settings.public_base_url + url
        if has_request_context():
            return request.host_url.rstrip("/") + request.script_root + url
        return url
