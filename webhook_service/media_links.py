"""Signed URLs for stored media, made at read time (they expire, so they are never stored)."""
from __future__ import annotations

import dataclasses

from flask import has_request_context, request

from .models import Attachment
from .runtime import Runtime

# Types a browser may show inline; everything else is served as a download.
INLINE_PREFIXES = ("image/", "audio/", "video/")


def disposition_for(content_type: str | None) -> str:
    return "inline" if content_type and content_type.startswith(INLINE_PREFIXES) else "attachment"


def url_ttl(runtime: Runtime, tenant_id: str) -> int:
    tenant = runtime.settings.tenant(tenant_id)
    if tenant and tenant.media_url_ttl_seconds:
        return tenant.media_url_ttl_seconds
    return runtime.settings.storage.url_ttl_seconds


def absolute(runtime: Runtime, url: str) -> str:
    """Local-store URLs are relative to this service; give them the public origin."""
    if "://" in url:
        return url
    if runtime.settings.public_base_url:
        return runtime.settings.public_base_url + url
    if has_request_context():
        return request.host_url.rstrip("/") + request.script_root + url
    return url


def signed_blob_url(runtime: Runtime, *, blob_key: str, tenant_id: str, content_type: str | None,
                    filename: str | None):
    """A SignedUrl (absolute url + expiry) for one stored object."""
    signed = runtime.blob_store.signed_url(
        blob_key, expires_in=url_ttl(runtime, tenant_id), filename=filename,
        content_type=content_type, disposition=disposition_for(content_type))
    return dataclasses.replace(signed, url=absolute(runtime, signed.url))


def attachment_url_signer(runtime: Runtime):
    def sign(attachment: Attachment) -> str | None:
        if attachment.status != "stored" or not attachment.blob_key:
            return None
        return signed_blob_url(runtime, blob_key=attachment.blob_key, tenant_id=attachment.tenant_id,
                               content_type=attachment.content_type, filename=attachment.name).url
    return sign
