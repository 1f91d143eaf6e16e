"""Making credentials for the configuration file: `hash-password` ([[api_users]] and [[operators]]) and
`new-api-key` ([[api_keys]])."""

from __future__ import annotations

import hashlib
import secrets
import sys

import click
from werkzeug.security import generate_password_hash


@click.command("hash-password")
def hash_password() -> None:
    """Print a password hash for an [[api_users]] or [[operators]] entry. On a terminal it asks for the
    password twice, without echoing it; otherwise it reads one line from standard input
    (echo "$PASSWORD" | ...). Never from the command line, where other users and the shell's history
    could read it."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise click.UsageError("the password is empty")
    click.echo(generate_password_hash(password))


@click.command("new-api-key")
def new_api_key() -> None:
    """Generate a bearer API key; print it (give it to the client) and its hash (put it in the config)."""
    key = "wsk_" + secrets.token_urlsafe(32)
    click.echo(f"key:        {key}")
    click.echo(f"key_sha256: {hashlib.sha256(key.encode()).hexdigest()}")
