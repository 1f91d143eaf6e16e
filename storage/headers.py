"""Values that end up in HTTP headers (Content-Disposition, Content-Type, x-amz-meta-*, x-ms-meta-*):
built or checked here, once, so no caller-supplied text can split a header or smuggle a path."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from urllib.parse import quote

DISPOSITIONS = ("inline", "attachment")
# Types a browser may show inline; everything else is served as a download (an HTML or SVG file shown
# inline would run in the origin that serves it).
INLINE_TYPE_PREFIXES = ("image/", "audio/", "video/")
MAX_FILENAME_CHARS = 255
# Keep the extension when shortening a long name, unless the "extension" is itself absurdly long.
_MAX_KEPT_EXTENSION_CHARS = 32
# Control characters, bidi overrides and zero-width marks (Cf: "gpj.exe" shown as "exe.jpg"), and the
# Unicode line and paragraph separators.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
_EDGE_DOTS_AND_SPACES = re.compile(r"^[\s.]+|[\s.]+$")
# Printable ASCII a quoted `filename="..."` fallback may not hold: the quote, the quoted-string's
# escape character and the path separators.
_NOT_IN_FALLBACK = '"\\/'
# Printable ASCII without leading or trailing blanks: HTTP trims those, so they would not round-trip.
_HEADER_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# Lower-case C# identifiers (what Azure demands); S3 lower-cases names anyway.
_METADATA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,127}")


def sanitize_filename(filename: str) -> str:
    """The caller's file name reduced to a harmless display name; "" when nothing usable is left."""
    name = re.split(r"[/\\]", filename)[-1]
    name = "".join(char for char in name if unicodedata.category(char) not in _UNSAFE_CATEGORIES and char != '"')
    return _shortened(_EDGE_DOTS_AND_SPACES.sub("", name))


def _shortened(name: str) -> str:
    if len(name) > MAX_FILENAME_CHARS:
        stem, extension = os.path.splitext(name)
        extension = extension[:_MAX_KEPT_EXTENSION_CHARS]
        name = stem[: MAX_FILENAME_CHARS - len(extension)] + extension
    return name


def disposition_for(content_type: str | None) -> str:
    """`inline` for image, audio and video types, `attachment` for everything else, SVG included: an
    image type by name, a document with scripts in fact (allowed_types may admit it)."""
    essence = (content_type or "").split(";", 1)[0].strip().lower()
    if not essence.startswith(INLINE_TYPE_PREFIXES) or essence.endswith("+xml") or "svg" in essence:
        return "attachment"
    return "inline"


def content_disposition(disposition: str, filename: str | None) -> str:
    """A Content-Disposition value: `inline` or `attachment`, with the sanitized file name as an ASCII
    `filename="..."` and, when the name is not ASCII, the exact name as RFC 5987 `filename*`."""
    if disposition not in DISPOSITIONS:
        raise ValueError(f"disposition must be one of {DISPOSITIONS}, not {disposition!r}")
    name = sanitize_filename(filename) if filename else ""
    if not name:
        return disposition
    ascii_name = _ascii_fallback(name)
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _ascii_fallback(name: str) -> str:
    """The name in ASCII: "café.jpg" becomes "cafe.jpg", characters with no ASCII form "_". A compatibility form can
    decompose into what the name was cleaned of (the fullwidth quotation mark into '"', which would end
    the quoted value and start parameters of the sender's choosing; the fullwidth solidus into "/"; the
    two dot leader into ".."), so those become "_" too, and the edges are trimmed again."""
    decomposed = unicodedata.normalize("NFKD", name)
    fallback = "".join(
        char if " " <= char <= "~" and char not in _NOT_IN_FALLBACK else "_"
        for char in decomposed
        if not unicodedata.combining(char)
    )
    # Decompositions run up to 18 characters long: shortened again to the length of any other name.
    return _shortened(_EDGE_DOTS_AND_SPACES.sub("", fallback)) or "_"


def check_header_value(field: str, value: str) -> str:
    """Return `value` if it can be sent as a header value unchanged, else raise ValueError."""
    if not isinstance(value, str) or not _HEADER_TEXT.fullmatch(value):
        raise ValueError(f"{field} must be printable ASCII without leading or trailing blanks: {value!r}")
    return value


def normalize_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata in the one form all backends keep intact: names lower-cased with "-" turned into "_"
    ("X-Sha256" -> "x_sha256"), values printable ASCII or empty (they travel as HTTP headers)."""
    normalized: dict[str, str] = {}
    for name, value in metadata.items():
        # isascii first: str.lower() maps some non-ASCII letters (the Kelvin sign) onto ASCII ones.
        if not isinstance(name, str) or not name.isascii():
            raise ValueError(f"metadata name must be an ASCII string: {name!r}")
        normal_name = name.lower().replace("-", "_")
        if not _METADATA_NAME.fullmatch(normal_name):
            raise ValueError(
                f"metadata name {name!r} must be letters, digits, '_' or '-' (at most 128), not starting with a digit"
            )
        if normal_name in normalized:
            raise ValueError(f"metadata names collide once normalized: {normal_name!r}")
        if value != "":
            check_header_value(f"metadata value of {name!r}", value)
        normalized[normal_name] = value
    return normalized
