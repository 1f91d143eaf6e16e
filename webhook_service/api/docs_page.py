"""GET /docs: Swagger UI, browsing the OpenAPI document. Its script, stylesheet and icon are served by
this service from the copy of Swagger UI 5 in the flask-openapi3-swagger wheel, under /docs/assets/:
no CDN, so the page works offline and behind a firewall. (swagger-ui-bundle ships Swagger UI 4, which
cannot show an OpenAPI 3.1 document.)"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path

import flask_openapi3_swagger
from flask import Blueprint, Response, request, url_for

SWAGGER_UI_ASSETS = Path(flask_openapi3_swagger.__file__).parent / "templates" / "swagger"
ASSETS_URL_PATH = "/docs/assets"
_SCRIPT = "js/swagger-ui-bundle.js"
_STYLESHEET = "css/swagger-ui.css"
_ICON = "images/swagger.svg"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" href="{icon}">
<link rel="stylesheet" href="{stylesheet}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{script}"></script>
<script nonce="{nonce}">
window.ui = SwaggerUIBundle({{
  url: {document_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


# Only this service's own script, and the page's one inline script by its nonce (new on every answer);
# Swagger UI sets inline styles and uses data: images; its requests ("Try it out") go to this service.
_POLICY = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def docs_blueprint(*, document_path: str, title: str) -> Blueprint:
    """`document_path` is where the app serves the OpenAPI document (it may sit under a proxy's prefix,
    so URLs are made per request)."""
    blueprint = Blueprint("docs", __name__, static_folder=SWAGGER_UI_ASSETS, static_url_path=ASSETS_URL_PATH)

    @blueprint.get("/docs")
    def docs() -> Response:
        nonce = secrets.token_urlsafe(18)
        page = _PAGE.format(
            nonce=nonce,
            title=html.escape(title),
            icon=html.escape(url_for("docs.static", filename=_ICON)),
            stylesheet=html.escape(url_for("docs.static", filename=_STYLESHEET)),
            script=html.escape(url_for("docs.static", filename=_SCRIPT)),
            # A JSON string is a JavaScript string; "<" escaped so that no URL can close the script.
            document_url=json.dumps(request.script_root + document_path).replace("<", "\\u003c"),
        )
        response = Response(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = _POLICY.format(nonce=nonce)
        return response

    return blueprint
