"""Screenshots of the operator console for the README: docs/console-overview.png,
docs/console-message.png and docs/console-phone.png (the request log on a phone's screen).

    .venv/bin/python scripts/console_screenshots.py [--chromium /usr/bin/chromium] [--out docs]

Runs the service on its embedded defaults in a temporary directory, sends it a day of webhooks (signed
Standard Webhooks, some refused, an MMS whose photo is downloaded from a loopback server, a delivery
report that arrives late), spreads the request log over the last 24 hours so the charts have a shape,
signs in with Chromium and photographs two pages on a laptop's screen and one on a phone's.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa
from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright
from standardwebhooks.webhooks import Webhook
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webhook_service.app import create_app  # noqa: E402
from webhook_service.database.migrate import migrate  # noqa: E402
from webhook_service.database.request_counts import request_counts  # noqa: E402
from webhook_service.database.tables import RequestCount, RequestLogEntry  # noqa: E402
from webhook_service.runtime import Runtime  # noqa: E402
from webhook_service.settings import load_settings  # noqa: E402

TENANT = "00000000-0000-0000-0000-000000000000"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WRONG = "whsec_" + "d3JvbmcgZmFrZSBzZWNyZXQgZm9yIHRlc3RzIQ=="
OPERATOR = ("operator", "screenshot-password")


def photo() -> bytes:
    """A made-up picture: a sunset over water."""
    image = Image.new("RGB", (480, 320))
    draw = ImageDraw.Draw(image)
    for y in range(320):
        shade = y / 320
        draw.line([(0, y), (480, y)], fill=(int(250 - 120 * shade), int(150 - 60 * shade), int(90 + 120 * shade)))
    draw.ellipse((190, 120, 290, 220), fill=(255, 214, 102))
    draw.rectangle((0, 200, 480, 320), fill=(38, 70, 120))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


class MediaHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def post(client, connection: str, event: dict, *, secret: str = SECRET):
    body = json.dumps(event).encode()
    message_id = f"msg_{random.getrandbits(64):x}"
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=datetime.now(UTC), data=body.decode())
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(time.time())), "webhook-signature": signature}
    return client.post(f"/webhooks/standard/{connection}", data=body, headers=headers, content_type="application/json")


def inbound(identifier: str, sender: str, text: str, media: list[dict] | None = None) -> dict:
    data = {"providerMessageId": identifier, "from": sender, "to": ["+15551234567"], "text": text}
    return {"type": "message.received", "data": {**data, "attachments": media or []}}


def status(identifier: str, state: str, at: datetime, error: str | None = None) -> dict:
    data = {"providerMessageId": identifier, "status": state, "providerStatus": state, "occurredAt": at.isoformat()}
    return {"type": "message.status", "data": {**data, "errorCode": error}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    random.seed(13)

    media = ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
    MediaHandler.body = photo()
    threading.Thread(target=media.serve_forever, daemon=True).start()
    media_base = f"http://127.0.0.1:{media.server_port}"

    work = Path(tempfile.mkdtemp(prefix="console-screenshots-"))
    database_url = f"sqlite:///{work / 'service.db'}"
    migrate(database_url)
    connections = [
        {"provider": "standard", "name": name, "tenant": TENANT, "secrets": [SECRET]} for name in ("us-east", "eu-west")
    ]
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": str(work),
            "database_url": database_url,
            "secret_key": "screenshot-secret-key-0123456789abcdef0123",
            "queue": {"immediate": True},
            "media": {
                "fetch": {"allow_http": True, "allow_private_networks": ["127.0.0.0/8"]},
                "retry_max_attempts": 1,
            },
            "tenants": [{"id": TENANT, "name": "Acme"}],
            "connections": connections,
            "operators": [
                {
                    "username": OPERATOR[0],
                    "password_hash": generate_password_hash(OPERATOR[1]),
                    "role": "admin",
                    "tenants": ["*"],
                }
            ],
        },
    )
    runtime = Runtime(settings)
    app = create_app(runtime=runtime)
    client = app.test_client()

    now = datetime.now(UTC)
    for number in range(160):
        connection = random.choice(("us-east", "us-east", "eu-west"))
        identifier = f"SM{number:04d}"
        post(client, connection, inbound(identifier, f"+1555{random.randint(1000000, 9999999)}", "Order update"))
        if random.random() < 0.1:
            post(client, connection, inbound(identifier, "+15550000000", "retry"))  # a duplicate
        if random.random() < 0.12:
            post(client, connection, inbound(f"X{number}", "+15550000000", "forged"), secret=WRONG)
        if random.random() < 0.05:
            client.post("/webhooks/standard/old-account", data=b"{}")
    photo_url = f"{media_base}/sunset.jpg"
    post(
        client,
        "us-east",
        inbound(
            "MM-sunset",
            "+15550142857",
            "Look at this sunset from the pier!",
            [
                {"url": photo_url, "contentType": "image/jpeg", "name": "sunset.jpg"},
                {"url": f"{media_base}/missing/voice-note.m4a", "contentType": "audio/mp4", "name": "voice-note.m4a"},
            ],
        ),
    )
    sent_at = now - timedelta(minutes=3)
    for state, offset in (("queued", 0), ("sent", 2), ("delivered", 9), ("sent", 5)):
        post(client, "us-east", status("MM-out-1", state, sent_at + timedelta(seconds=offset)))

    # Spread the log over the day (the intake stamps every request with the time it arrived), and count it
    # again per minute as it now stands: the overview's charts read those counts, not the log.
    counts = request_counts(runtime.db)
    counts.flush()
    with runtime.db.transaction() as session:
        ids = list(session.scalars(sa.select(RequestLogEntry.id).order_by(RequestLogEntry.id)))
        for position, entry_id in enumerate(ids[:-8]):
            moment = now - timedelta(hours=23.5 * (1 - position / len(ids)) ** 1.3, minutes=random.random() * 20)
            session.execute(sa.update(RequestLogEntry).where(RequestLogEntry.id == entry_id).values(received_at=moment))
        session.execute(sa.delete(RequestCount))
        for entry in session.scalars(sa.select(RequestLogEntry)):
            counts.add(
                {
                    column: getattr(entry, column)
                    for column in ("received_at", "tenant_id", "provider", "connection", "outcome")
                }
            )
    counts.flush()

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.goto(f"{base}/console/login")
        page.fill("input[name=username]", OPERATOR[0])
        page.fill("input[name=password]", OPERATOR[1])
        page.click("button[type=submit]")
        page.wait_for_selector("figure.chart")
        page.screenshot(path=str(args.out / "console-overview.png"), full_page=True)
        page.goto(f"{base}/console/messages?provider_message_id=MM-sunset")
        page.click("table.list tbody a")
        page.wait_for_function("() => [...document.images].every(img => img.complete && img.naturalWidth > 0)")
        page.screenshot(path=str(args.out / "console-message.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(f"{base}/console/requests")
        phone.screenshot(path=str(args.out / "console-phone.png"))
        browser.close()
    server.shutdown()
    media.shutdown()
    runtime.close()
    print(f"wrote console-overview.png, console-message.png and console-phone.png in {args.out}")


if __name__ == "__main__":
    main()
