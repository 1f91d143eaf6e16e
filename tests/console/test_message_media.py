"""A message's page shows each stored attachment as a browser can use it: an image as a thumbnail, audio
and video in a player, anything else as a download link, all through their signed media URLs (which the
page's Content-Security-Policy allows), each with its size, declared and sniffed type and SHA-256."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from tests.console.conftest import ACTION_SETTINGS
from tests.fixtures.media_server import loopback_resolver
from tests.media import samples
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Attachment, Message


@pytest.fixture
def settings_overrides():
    return ACTION_SETTINGS


@pytest.fixture
def resolver():
    return loopback_resolver()


MEDIA = [
    ("photo.jpg", samples.jpeg(), "image/jpeg", "<img src="),
    ("note.mp3", samples.mp3(), "audio/mpeg", "<audio controls"),
    ("clip.mp4", samples.mp4(), "video/mp4", "<video controls"),
    ("terms.pdf", samples.pdf(), "application/pdf", '<a class="download"'),
]


def test_images_are_thumbnails_audio_and_video_play_and_the_rest_download(admin, client, runtime, media_server):
    attachments = [
        {"url": media_server.serve(f"/{name}", data, content_type), "contentType": content_type, "name": name}
        for name, data, content_type, _ in MEDIA
    ]
    assert post_standard(client, inbound_body("media-kinds", attachments=attachments)).status_code == 200
    with runtime.db.reading() as session:
        message_id = session.scalars(sa.select(Message.id)).one()
        stored = list(session.scalars(sa.select(Attachment).order_by(Attachment.index)))
    assert [a.status for a in stored] == ["stored"] * 4
    response = admin.get(f"/console/messages/{message_id}")
    page = response.get_data(as_text=True)
    assert "img-src 'self' http://localhost" in response.headers["Content-Security-Policy"]
    assert "media-src 'self' http://localhost" in response.headers["Content-Security-Policy"]
    articles = page.split('<article class="attachment">')[1:]
    assert len(articles) == 4
    for article, attachment, (name, _, content_type, element) in zip(articles, stored, MEDIA, strict=True):
        assert element in article, name
        assert f"{attachment.size:,} bytes" in article and attachment.sha256 in article, name
        assert f"<dt>Declared type</dt><dd>{content_type}</dd>" in article, name
        assert f"<dt>Sniffed type</dt><dd>{attachment.content_type}</dd>" in article, name
        # Each one's signed URL serves it.
        url = html.unescape(re.search(r'(?:src|href)="(http://localhost/media/[^"]+)"', article).group(1))
        served = client.get(url.removeprefix("http://localhost"))
        assert served.status_code == 200 and served.headers["Content-Type"] == attachment.content_type, name
    assert "Retry</button>" not in page
