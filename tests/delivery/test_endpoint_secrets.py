"""Endpoint signing secrets sealed in the database, on SQLite and PostgreSQL: a copy of the database does
not give them away, deliveries still verify with the secret the API handed out, secrets kept in plain
text before sealing still sign and get sealed, and a secret_key they do not open with sends nothing and
loses nothing."""

from __future__ import annotations

import base64
import logging
import secrets

import pytest
import sqlalchemy as sa
from alembic import command
from standardwebhooks.webhooks import Webhook

from tests.delivery.conftest import A, listen
from tests.fixtures.app import TENANT_A
from tests.support.migrations import schema_differences
from tests.support.standard import inbound_body, post_standard
from webhook_service.config.model import DeclaredEndpoint
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config
from webhook_service.database.tables import DELIVERIES, ENDPOINTS
from webhook_service.delivery.endpoint_secrets import SEALED_PREFIX, EndpointSecrets, SecretUnreadable
from webhook_service.runtime import Runtime


def stored(runtime, endpoint_id: str) -> sa.Row:
    with runtime.db.reading() as session:
        return session.execute(
            sa.select(ENDPOINTS.c.secret, ENDPOINTS.c.previous_secret, ENDPOINTS.c.claimed_until).where(
                ENDPOINTS.c.id == endpoint_id
            )
        ).one()


def a_secret(size: int = 24) -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()


def test_a_sealed_secret_opens_only_for_its_endpoint_and_its_key():
    box = EndpointSecrets(b"k" * 32)
    secret = a_secret(64)  # the longest a declared endpoint may have
    sealed = box.seal("endpoint-1", secret)
    assert sealed.startswith(SEALED_PREFIX) and secret not in sealed and len(sealed) <= 512
    assert box.open("endpoint-1", sealed) == secret
    assert box.seal("endpoint-1", secret) != sealed  # a fresh nonce each time
    with pytest.raises(SecretUnreadable):
        box.open("endpoint-2", sealed)  # copied onto another endpoint's row
    with pytest.raises(SecretUnreadable):
        EndpointSecrets(b"j" * 32).open("endpoint-1", sealed)
    tampered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(SecretUnreadable):
        box.open("endpoint-1", tampered)
    with pytest.raises(SecretUnreadable):
        box.open("endpoint-1", SEALED_PREFIX + "not base64!")
    assert box.open("endpoint-1", secret) == secret  # kept in plain text before sealing


def test_the_database_keeps_no_secret_and_deliveries_verify_with_the_ones_handed_out(client, runtime, receiver):
    endpoint = listen(client, receiver)
    row = stored(runtime, endpoint["id"])
    assert row.secret.startswith(SEALED_PREFIX) and endpoint["secret"] not in row.secret
    rotated = client.post(f"/api/v1/endpoints/{endpoint['id']}/rotate-secret", headers=A).get_json()
    row = stored(runtime, endpoint["id"])
    assert row.secret.startswith(SEALED_PREFIX) and row.previous_secret.startswith(SEALED_PREFIX)
    assert rotated["secret"] not in row.secret and endpoint["secret"] not in row.previous_secret
    post_standard(client, inbound_body("m-1"))
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    [received] = receiver.wait_for(1)
    assert received.verified
    for secret in (endpoint["secret"], rotated["secret"]):
        Webhook(secret).verify(received.body, received.headers)


def test_a_secret_kept_in_plain_text_still_signs_and_is_sealed_once_a_worker_starts(client, runtime, receiver, caplog):
    endpoint = listen(client, receiver)
    rotated = client.post(f"/api/v1/endpoints/{endpoint['id']}/rotate-secret", headers=A).get_json()
    receiver.expect("/hook", rotated["secret"])
    with runtime.db.writing() as conn:  # as a version before sealing kept them
        conn.execute(sa.update(ENDPOINTS).values(secret=rotated["secret"], previous_secret=endpoint["secret"]))
    post_standard(client, inbound_body("m-1"))
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    [received] = receiver.wait_for(1)
    assert received.verified
    Webhook(endpoint["secret"]).verify(received.body, received.headers)  # the previous one signs too

    caplog.set_level(logging.INFO, logger="webhook_service.runtime")
    runtime.catch_up_deliveries()
    row = stored(runtime, endpoint["id"])
    assert row.secret.startswith(SEALED_PREFIX) and row.previous_secret.startswith(SEALED_PREFIX)
    assert [r.fields for r in caplog.records if r.getMessage() == "endpoint_secrets_sealed"] == [{"endpoints": 1}]
    post_standard(client, inbound_body("m-2"))
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    assert receiver.wait_for(2)[1].verified


def under_another_key(runtime, resolver) -> Runtime:
    """The same deployment's database, with another secret_key (a changed SECRET_KEY)."""
    return Runtime(
        runtime.settings.model_copy(update={"secret_key": "another key of at least 32 characters"}), resolver=resolver
    )


def test_under_another_secret_key_nothing_is_sent_and_the_deliveries_wait(client, runtime, resolver, receiver, caplog):
    endpoint = listen(client, receiver)
    post_standard(client, inbound_body("m-1"))
    other = under_another_key(runtime, resolver)
    try:
        caplog.set_level(logging.ERROR, logger="webhook_service.delivery")
        assert other.deliveries.drain(endpoint["id"]) is None
        [failure] = [r for r in caplog.records if r.getMessage() == "endpoint_secret_unreadable"]
        assert failure.fields["endpoint_id"] == endpoint["id"] and "secret_key" in failure.fields["reason"]
        assert stored(runtime, endpoint["id"]).claimed_until is None  # the claim is given back
        # Its sealing pass leaves a secret it cannot open as it is.
        other.catch_up_deliveries()
    finally:
        other.close()
    assert receiver.requests() == []
    with runtime.db.reading() as session:  # nothing taken from the feed: the event waits there
        assert session.scalar(sa.select(sa.func.count()).select_from(DELIVERIES)) == 0
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}  # under the key it was sealed with
    assert receiver.wait_for(1)[0].verified


def test_a_rotation_under_another_key_starts_again_from_the_new_secret(client, runtime, resolver, receiver):
    endpoint = listen(client, receiver)
    other = under_another_key(runtime, resolver)
    try:
        rotated = other.endpoints.rotate_secret(TENANT_A, endpoint["id"])
        assert stored(runtime, endpoint["id"]).previous_secret is None  # the old one cannot be opened
        receiver.expect("/hook", rotated["secret"])
        post_standard(client, inbound_body("m-1"))
        assert other.deliveries.drain(endpoint["id"]) == {"delivered": 1}
        [received] = receiver.wait_for(1)
        assert received.verified and len(received.headers["webhook-signature"].split(" ")) == 1
    finally:
        other.close()


def test_declared_endpoints_are_sealed_and_rewritten_only_when_their_secret_changes(client, runtime, receiver):
    secret = a_secret(64)  # the longest the configuration takes
    declared = DeclaredEndpoint(tenant=TENANT_A, name="declared", url=receiver.url("/declared"), secret=secret)
    runtime.endpoints.sync_declared([declared])
    with runtime.db.reading() as session:
        first = session.execute(sa.select(ENDPOINTS.c.id, ENDPOINTS.c.secret, ENDPOINTS.c.updated_at)).one()
    assert first.secret.startswith(SEALED_PREFIX) and secret not in first.secret
    runtime.endpoints.sync_declared([declared])  # the same configuration again: nothing to change
    assert stored(runtime, first.id).secret == first.secret
    with runtime.db.reading() as session:
        assert session.scalar(sa.select(ENDPOINTS.c.updated_at)) == first.updated_at

    changed = a_secret()
    runtime.endpoints.sync_declared([declared.model_copy(update={"secret": changed})])
    assert EndpointSecrets(runtime.secret_key).open(first.id, stored(runtime, first.id).secret) == changed
    receiver.expect("/declared", changed)
    post_standard(client, inbound_body("m-1"))
    assert runtime.deliveries.drain(first.id) == {"delivered": 1}
    assert receiver.wait_for(1)[0].verified


def test_0008_downgrades_upgrades_and_matches_the_models(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0007")
        try:
            lengths = {
                c["name"]: getattr(c["type"], "length", None) for c in sa.inspect(engine).get_columns("endpoints")
            }
            assert lengths["secret"] == lengths["previous_secret"] == 128
        finally:
            command.upgrade(config, "head")
        engine.dispose()
        lengths = {c["name"]: getattr(c["type"], "length", None) for c in sa.inspect(engine).get_columns("endpoints")}
        assert lengths["secret"] == lengths["previous_secret"] == 512
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
