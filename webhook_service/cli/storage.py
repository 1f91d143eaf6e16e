"""`webhook-service storage init`: create the configured bucket (S3) or container (Azure), or make the
local store's directories, before the service first stores media. Idempotent; the service itself never
creates them (a readiness probe only reads)."""

from __future__ import annotations

import click

from storage import StorageError
from webhook_service.cli.context import service_runtime
from webhook_service.config.model import Settings


@click.group("storage")
def storage_group() -> None:
    """The blob store that keeps media."""


@storage_group.command("init")
def storage_init() -> None:
    """Create the configured bucket or container unless it exists, then check the store can be used."""
    runtime = service_runtime()
    where = _described(runtime.settings)
    try:
        created = runtime.blob_store.create_if_missing()
        runtime.blob_store.check()
    except StorageError as error:
        raise click.ClickException(f"{where}: {error}") from None
    if runtime.settings.storage.backend == "local":
        click.echo(f"{where} is ready")
    else:
        click.echo(f"created {where}" if created else f"{where} exists already")


def _described(settings: Settings) -> str:
    storage = settings.storage
    if storage.backend == "s3" and storage.s3 is not None:
        return f"S3 bucket {storage.s3.bucket!r}"
    if storage.backend == "azure" and storage.azure is not None:
        return f"Azure container {storage.azure.container!r}"
    return f"local blob store {settings.local_blob_dir}"
