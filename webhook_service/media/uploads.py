"""Uploaded media for outbound MMS: checked with the inbound attachments' rules, stored in the blob store
under a key the service makes, recorded in `media_uploads`, and revoked on request."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from storage import BlobStore, SignedUrl, StorageError, content_disposition, disposition_for
from storage.headers import sanitize_filename
from webhook_service.config.model import PhoneNumber
from webhook_service.database.engine import Database
from webhook_service.database.tables import MEDIA_UPLOADS as UPLOADS
from webhook_service.database.tables import MediaUpload
from webhook_service.media.links import MediaLinks
from webhook_service.media.validation import CheckedMedia, MediaPolicy, check_media, convert_for_carriers
from webhook_service.model.file_names import EXTENSIONS


@dataclass(frozen=True)
class StoredUpload:
    upload: MediaUpload
    url: SignedUrl


def upload_blob_key(tenant_id: str, created_at: datetime, upload_id: str) -> str:
    """Made by the service, never from the client's file name."""
    return f"{tenant_id}/uploads/{created_at:%Y/%m/%d}/{upload_id}"


class MediaUploads:
    def __init__(self, db: Database, blob_store: BlobStore, links: MediaLinks, policy: MediaPolicy):
        self.db = db
        self.blob_store = blob_store
        self.links = links
        self.policy = policy

    def check(
        self,
        source: Path,
        *,
        declared_content_type: str | None,
        convert: bool,
        source_sha256: str | None,
        workdir: Path,
    ) -> CheckedMedia:
        """The inbound attachments' checks (MediaRejected when the file is refused); with `convert`, images
        carriers refuse are converted and images over the limit scaled down instead."""
        if convert:
            return convert_for_carriers(
                source, declared_content_type=declared_content_type, policy=self.policy, workdir=workdir
            )
        return check_media(
            source,
            declared_content_type=declared_content_type,
            policy=self.policy,
            workdir=workdir,
            source_sha256=source_sha256,
        )

    def store(
        self,
        checked: CheckedMedia,
        *,
        file_name: str,
        number: PhoneNumber,
        converted: bool,
        tenant_id: str,
        created_by: str,
    ) -> StoredUpload:
        """Put the checked file in the blob store (taking the file over) and record it. Storage and
        database errors propagate; a blob whose record could not be written is removed again."""
        now = datetime.now(UTC)
        if converted:
            file_name = named_after_type(file_name, checked.content_type)
        upload = MediaUpload(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            phone_number=number.number,
            phone_number_id=number.id,
            file_name=file_name,
            content_type=checked.content_type,
            declared_content_type=checked.declared_content_type,
            size=checked.size,
            sha256=checked.sha256,
            created_at=now,
            revoked_at=None,
            created_by=created_by,
        )
        upload.blob_key = upload_blob_key(tenant_id, now, upload.id)
        self.blob_store.put_file(
            upload.blob_key,
            checked.path,
            content_type=checked.content_type,
            metadata={"upload_id": upload.id, "sha256": checked.sha256},
            content_disposition=content_disposition(disposition_for(checked.content_type), file_name),
            consume=True,
        )
        try:
            url = self.links.upload_url(upload)
            upload.expires_at = url.expires_at
            with self.db.transaction() as session:
                session.add(upload)
        except BaseException:
            self._delete_quietly(upload.blob_key)
            raise
        return StoredUpload(upload, url)

    def find(self, upload_id: str, *, tenant_id: str | None = None) -> MediaUpload | None:
        """The upload, revoked or not; with `tenant_id`, only if it is that tenant's."""
        query = sa.select(MediaUpload).where(MediaUpload.id == upload_id)
        if tenant_id is not None:
            query = query.where(MediaUpload.tenant_id == tenant_id)
        with self.db.reading() as session:
            return session.scalars(query).first()

    def revoke(self, upload: MediaUpload) -> bool:
        """Delete the blob, then mark the upload revoked: its signed URLs stop working with the blob, its
        stable URL with the mark. The blob goes first so that a failure leaves an upload a retry can still
        revoke. False when another request revoked it meanwhile."""
        self.blob_store.delete(upload.blob_key)
        with self.db.writing() as connection:
            revoked = connection.execute(
                sa.update(UPLOADS)
                .where(UPLOADS.c.id == upload.id, UPLOADS.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        return bool(revoked)

    def _delete_quietly(self, key: str) -> None:
        # Cleanup after another failure, which is the one to report; an orphaned blob is only wasted space.
        try:
            self.blob_store.delete(key)
        except StorageError:
            pass


def named_after_type(name: str, content_type: str) -> str:
    """A converted file's name follows its new type (photo.bmp becomes photo.png), so a phone that goes
    by the name opens it right."""
    extensions = EXTENSIONS.get(content_type)
    stem, extension = os.path.splitext(name)
    if not extensions or extension.lower() in extensions:
        return name
    return sanitize_filename(stem + extensions[0])
