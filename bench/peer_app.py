"""The peer for bench/intake.py: a webhook receiver as a user would write it from the Standard Webhooks
tutorial. Verify the signature with the official library, parse the JSON, insert one row, commit, 200.
No raw request, no feed, no quarantine, no group commit: one durable commit per request.

Configured by the benchmark through the environment:
- PEER_SECRET: the Standard Webhooks secret;
- PEER_DATABASE: a SQLite file path (WAL, synchronous=FULL, as the service's embedded default), or a
  PostgreSQL conninfo (`postgresql://...`, psycopg, synchronous_commit on: a commit is on disk).
Each thread keeps its own connection, as a careful hand-written receiver would. The benchmark creates
the table (SCHEMA) before the server starts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading

from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SCHEMA = """CREATE TABLE IF NOT EXISTS peer_messages (
    webhook_id TEXT PRIMARY KEY, provider_message_id TEXT NOT NULL, sender TEXT, recipients TEXT,
    text TEXT, received_at TIMESTAMP NOT NULL)"""

POSTGRES_INSERT = "INSERT INTO peer_messages VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT DO NOTHING"
SQLITE_INSERT = "INSERT INTO peer_messages VALUES (?, ?, ?, ?, ?, datetime('now')) ON CONFLICT DO NOTHING"


def create_app() -> Flask:
    database = os.environ["PEER_DATABASE"]
    postgres = database.startswith("postgresql://")
    webhook = Webhook(os.environ["PEER_SECRET"])
    insert = POSTGRES_INSERT if postgres else SQLITE_INSERT
    app = Flask(__name__)
    local = threading.local()

    def connection():
        if getattr(local, "connection", None) is None:
            if postgres:
                import psycopg

                local.connection = psycopg.connect(database)
            else:
                local.connection = sqlite3.connect(database, timeout=30, check_same_thread=False)
                local.connection.execute("PRAGMA journal_mode=WAL")
                local.connection.execute("PRAGMA synchronous=FULL")
        return local.connection

    @app.post("/hook")
    def hook():
        body = request.get_data()
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return "invalid signature", 401
        try:
            data = json.loads(body)["data"]
            # A message, or a status report (no text or addresses; its status in the text column).
            row = (
                request.headers["webhook-id"],
                data["providerMessageId"],
                data.get("from"),
                json.dumps(data.get("to", [])),
                data.get("text", data.get("status")),
            )
        except (ValueError, KeyError, TypeError):
            return "bad payload", 400
        db = connection()
        db.execute(insert, row)
        db.commit()
        return "", 200

    return app
