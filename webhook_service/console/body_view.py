"""A kept request body made readable for a page: JSON pretty-printed, form fields as a table, XML
indented, anything else as text. Whatever the body is (not UTF-8, 1 MiB, nested beyond reason, hostile
XML), the result is plain text for an autoescaping template, no more than SHOWN_BYTES of it, with a note
saying what was done; the whole body stays downloadable."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl
from xml.parsers.expat import ExpatError

import defusedxml.minidom
from defusedxml import DefusedXmlException

# What a page shows of a body; the rest is a download away.
SHOWN_BYTES = 64 * 1024


@dataclass(frozen=True)
class BodyView:
    kind: str  # empty | json | form | xml | text
    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()


def body_view(body: bytes, content_type: str) -> BodyView:
    if not body:
        return BodyView("empty")
    truncated = len(body) > SHOWN_BYTES
    shown = body[:SHOWN_BYTES]
    notes = []
    if truncated:
        notes.append(f"Showing the first {SHOWN_BYTES:,} of {len(body):,} bytes, as text; download the whole body.")
    if not _is_utf8(body):
        notes.append("Not valid UTF-8: the bytes that are not are shown as \\xNN escapes.")
        return BodyView("text", shown.decode("utf-8", "backslashreplace"), notes=tuple(notes))
    text = shown.decode("utf-8", "ignore")  # the cut may fall inside a character
    if truncated:
        return BodyView("text", text, notes=tuple(notes))
    media_type = content_type.split(";", 1)[0].strip().lower()
    for reader in _readers(media_type, text):
        view = reader(text)
        if view is not None:
            return view
    return BodyView("text", text)


def _readers(media_type: str, text: str) -> list[Callable[[str], BodyView | None]]:
    start = text.lstrip()[:1]
    if media_type.endswith("json") or start in ("{", "["):
        return [_json]
    if media_type == "application/x-www-form-urlencoded":
        return [_form]
    if media_type.endswith("xml") or start == "<":
        return [_xml]
    return []


def _json(text: str) -> BodyView | None:
    try:
        value = json.loads(text)
        pretty = json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None
    return BodyView("json", pretty)


def _form(text: str) -> BodyView | None:
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    return BodyView("form", fields=tuple(fields))


def _xml(text: str) -> BodyView | None:
    try:
        document = defusedxml.minidom.parseString(text)
        pretty = document.toprettyxml(indent="  ")
    except (DefusedXmlException, ExpatError, ValueError, RecursionError):  # not XML after all: shown as text
        return None
    return BodyView("xml", "\n".join(line for line in pretty.splitlines() if line.strip()))


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
