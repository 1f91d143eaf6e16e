"""GET /docs: Swagger UI over /openapi.json, every script, stylesheet and icon it loads served by the
service itself, so that the page works offline."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

from tests.support.media_uploads import A


class _Resources(HTMLParser):
    """The URLs a page loads: script sources and link targets (stylesheets, icons)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.scripts.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.links.append((values.get("rel") or "", values["href"] or ""))


def _resources(page: str) -> _Resources:
    parser = _Resources()
    parser.feed(page)
    return parser


def test_docs_is_swagger_ui_over_the_document(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "SwaggerUIBundle(" in page
    assert re.search(r'url: "/openapi\.json"', page)


def test_every_script_and_style_of_the_page_is_local_and_served(client):
    resources = _resources(client.get("/docs").get_data(as_text=True))
    assert resources.scripts and {rel for rel, _ in resources.links} >= {"stylesheet", "icon"}
    expected_types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for url in [*resources.scripts, *(href for _, href in resources.links)]:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/docs/assets/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.mimetype == expected_types[url[url.rindex(".") :]], url
        assert len(asset.get_data()) > 1000, url


def test_docs_needs_no_credentials_and_assets_outside_the_folder_are_not_served(client):
    assert client.get("/docs").status_code == 200
    assert client.get("/docs/assets/../../__init__.py").status_code == 404
    assert client.get("/docs/assets/nothing.js").status_code == 404
    assert client.get("/docs", headers=A).status_code == 200
