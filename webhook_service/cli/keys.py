"""Making credentials for the configuration file: `hash-password` ([[api_users]]) and `new-api-key`
([[api_keys]])."""

from __future__ import annotations

import hashlib
import secrets

import click
from werkzeug.security import generate_password_hash


@click.command("hash-password")
@click.password_option()
def hash_password(password: str) -> None:
    """Print a password hash for an [[api_users]] entry."""
    click.echo(generate_password_hash(password))


@click.command("new-api-key")
def new_api_key() -> None:
    """Generate a bearer API key; print it (give it to the client) and its hash (put it in the config)."""
    key = "wsk_" + secrets.token_urlsafe(32)
    click.echo(f"key:        {key}")
    click.echo(f"key_sha256: {hashlib.sha256(key.encode()).hexdigest()}")
