"""A kept request body made readable for a page: JSON pretty-printed, form fields as a table, XML
indented, anything else as text. Whatever the body is (not UTF-8, 1 MiB, nested beyond reason, hostile
XML), the result is plain text for an autoescaping template, no more than SHOWN_BYTES of it, with a note
saying what was done; the whole body stays downloadable.

Indenting multiplies what a body holds: 60 KB of JSON nested 400 deep around 30,000 numbers is 24 MB
pretty-printed (every number on a line of its own after 800 spaces), and a form of 20,000 empty fields a
table of as many rows. A view past SHOWN_BYTES characters, or of more than FORM_FIELDS fields, is not
made: the body is shown as received, with a note."""

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
# The most form fields shown as a table (a provider sends tens).
FORM_FIELDS = 1000


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
        try:
            view = reader(text)
        except _TooLarge as error:
            return BodyView("text", text, notes=(f"Shown as received: {error}.",))
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
    pretty = _Bounded("pretty-printed")
    try:
        for part in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(json.loads(text)):
            pretty.write(part)
    except (ValueError, RecursionError):
        return None
    return BodyView("json", pretty.text())


def _form(text: str) -> BodyView | None:
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    if len(fields) > FORM_FIELDS:
        raise _TooLarge(f"it has {len(fields):,} form fields, more than a table shows ({FORM_FIELDS:,})")
    return BodyView("form", fields=tuple(fields))


def _xml(text: str) -> BodyView | None:
    pretty = _Bounded("indented")
    try:
        document = defusedxml.minidom.parseString(text)
        document.writexml(pretty, "", "  ", "\n")  # as toprettyxml, which would make it whole
    except (DefusedXmlException, ExpatError, ValueError, RecursionError):  # not XML after all: shown as text
        return None
    return BodyView("xml", "\n".join(line for line in pretty.text().splitlines() if line.strip()))


class _TooLarge(Exception):
    """A view of the body that would be longer than a page shows."""


class _Bounded:
    """Collects a view's text, and stops its making once it passes SHOWN_BYTES characters: the encoders
    write piece by piece, so a view too large is never made whole."""

    def __init__(self, kind: str):
        self._kind = kind
        self._parts: list[str] = []
        self._length = 0

    def write(self, part: str) -> None:
        self._length += len(part)
        if self._length > SHOWN_BYTES:
            raise _TooLarge(f"{self._kind} it would be longer than {SHOWN_BYTES:,} characters")
        self._parts.append(part)

    def text(self) -> str:
        return "".join(self._parts)


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
