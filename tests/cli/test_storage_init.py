"""`webhook-service storage init` creates the configured bucket or container (on moto's S3 server and
Azurite, as on the real services) or readies the local store's directories, and running it again is
fine. It replaces the boto3 and Azure SDK snippets a deployment needed before."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from storage import AzureBlobStore, S3BlobStore, StorageError
from tests.fixtures.blob_servers import MOTO_CREDENTIALS, unique_bucket_name
from webhook_service.cli.main import cli


@pytest.fixture
def storage_init(tmp_path, monkeypatch):
    config = tmp_path / "service.toml"
    # --config sets this variable for the commands it runs: set here first, it is restored afterwards.
    monkeypatch.setenv("WEBHOOK_SERVICE_CONFIG", str(config))

    def invoke(storage_toml: str) -> Result:
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n{storage_toml}')
        return CliRunner().invoke(cli, ["--config", str(config), "storage", "init"], catch_exceptions=False)

    return invoke


def test_s3_bucket_is_created_once(storage_init, moto_s3_endpoint):
    bucket = unique_bucket_name()
    store = S3BlobStore(bucket, endpoint_url=moto_s3_endpoint, **MOTO_CREDENTIALS)
    with pytest.raises(StorageError):
        store.check()
    toml = (
        f'[storage]\nbackend = "s3"\n[storage.s3]\nbucket = "{bucket}"\nendpoint_url = "{moto_s3_endpoint}"\n'
        f'access_key_id = "testing"\nsecret_access_key = "testing"\n'
    )
    try:
        first = storage_init(toml)
        assert (first.exit_code, first.stdout) == (0, f"created S3 bucket '{bucket}'\n")
        store.check()
        again = storage_init(toml)
        assert (again.exit_code, again.stdout) == (0, f"S3 bucket '{bucket}' exists already\n")
    finally:
        store.client.delete_bucket(Bucket=bucket)


def test_s3_bucket_in_another_region_is_created_there(storage_init, moto_s3_endpoint):
    bucket = unique_bucket_name()
    toml = (
        f'[storage]\nbackend = "s3"\n[storage.s3]\nbucket = "{bucket}"\nregion = "eu-west-1"\n'
        f'endpoint_url = "{moto_s3_endpoint}"\naccess_key_id = "testing"\nsecret_access_key = "testing"\n'
    )
    store = S3BlobStore(bucket, region="eu-west-1", endpoint_url=moto_s3_endpoint, **MOTO_CREDENTIALS)
    try:
        assert storage_init(toml).exit_code == 0
        assert store.client.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    finally:
        store.client.delete_bucket(Bucket=bucket)


def test_azure_container_is_created_once(storage_init, azurite_blob_endpoint):
    container = unique_bucket_name()
    store = AzureBlobStore(container, connection_string=azurite_blob_endpoint)
    toml = f'[storage]\nbackend = "azure"\n[storage.azure]\ncontainer = "{container}"\nconnection_string = "{azurite_blob_endpoint}"\n'
    try:
        first = storage_init(toml)
        assert (first.exit_code, first.stdout) == (0, f"created Azure container '{container}'\n")
        store.check()
        again = storage_init(toml)
        assert (again.exit_code, again.stdout) == (0, f"Azure container '{container}' exists already\n")
    finally:
        store._service.delete_container(container)


def test_local_store_directories_are_made_and_checked(storage_init, tmp_path):
    blobs = tmp_path / "media"
    for _ in range(2):
        result = storage_init(f'[storage]\nlocal_dir = "{blobs}"\n')
        assert (result.exit_code, result.stdout) == (0, f"local blob store {blobs} is ready\n")
    assert (blobs / "objects").is_dir()


@pytest.mark.slow
def test_a_store_that_cannot_be_reached_is_an_error_naming_it(storage_init):
    unusable = '[storage]\nbackend = "azure"\n[storage.azure]\ncontainer = "x"\naccount_url = "http://127.0.0.1:1/devstoreaccount1"\naccount_key = "a2V5"\n'
    result = storage_init(unusable)
    assert result.exit_code == 1
    assert "Error: Azure container 'x': Azure Blob Storage is unreachable" in result.stderr
