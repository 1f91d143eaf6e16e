"""The file name an attachment is given to consumers: never null, and safe to join to a directory.

Seed 001's own download examples save each attachment as `Path('downloads') / attachment['name']`
(Python), `path.join(dir, attachment.name)` (Node) and `Path.Combine(directory, attachment.Name)` (C#):
a null name crashes them, and a name with a directory, `..` or a drive letter writes somewhere else.
Most providers send no name at all (Twilio, Telnyx, Vonage, Plivo), and a name a provider does send is
the sender's choice. So the name consumers read is made here, from what is known when it is read:

- the provider's name when it gave one, else the last segment of the media URL (Twilio's
  `.../Media/ME0a...`), else `attachment-<index>`;
- made safe for every file system a consumer may run on: no path separators, `..`, control, format or
  bidi characters, no characters Windows refuses (`<>:"|?*`) nor its reserved names (`CON`, `NUL`...),
  no leading or trailing dot or space, at most MAX_NAME_BYTES bytes of UTF-8, never empty;
- once the attachment is stored, with the extension of the type sniffed from its bytes: appended when
  the name has none (`ME0a...` becomes `ME0a....jpg`), kept when it is one of that type's extensions,
  replaced when it is another type's (`photo.png` holding a JPEG becomes `photo.jpg`, `page.html`
  holding text `page.txt`: a consumer that goes by the extension opens the file as what it is), and
  appended when it is not a known extension at all (`report.2024` becomes `report.2024.pdf`).

Before the attachment is stored (pending, or rejected or failed without a sniffed type) the name has
no extension from the type: the declared type is only the sender's claim. The name is computed, not
stored, from the URL, index, provider name and sniffed type, none of which changes once the attachment
is stored: from then on it is stable.
"""

from __future__ import annotations

import mimetypes
import os
import re
import unicodedata
from urllib.parse import unquote, urlsplit

from pathvalidate import sanitize_filename as sanitize_for_every_platform

from storage.headers import sanitize_filename

# Room for what a consumer adds ("name (1).jpg") under the 255 bytes most file systems allow.
MAX_NAME_BYTES = 200
# An "extension" longer than this is part of the name, not something to keep when shortening it.
_MAX_EXTENSION_CHARS = 16
FALLBACK_STEM = "attachment"

# The usual extensions of the types attachments and uploads are stored as (the default allowlist, the
# types image conversion writes, and common MMS types), the usual one first. Only these are kept as
# they are: the standard library's table would let `run.bat` stand for text/plain.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "image/png": (".png",),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "image/bmp": (".bmp",),
    "image/tiff": (".tif", ".tiff"),
    "image/heic": (".heic",),
    "image/heif": (".heif",),
    "video/mp4": (".mp4", ".m4v"),
    "video/quicktime": (".mov", ".qt"),
    "video/x-msvideo": (".avi",),
    "video/3gpp": (".3gp",),
    "video/webm": (".webm",),
    "audio/mpeg": (".mp3",),
    "audio/wav": (".wav",),
    "audio/x-wav": (".wav",),
    "audio/aac": (".aac",),
    "audio/mp4": (".m4a",),
    "audio/amr": (".amr",),
    "audio/ogg": (".ogg", ".oga", ".opus"),
    "application/pdf": (".pdf",),
    "text/plain": (".txt",),
    "text/vcard": (".vcf", ".vcard"),
    "text/x-vcard": (".vcf", ".vcard"),
    "text/calendar": (".ics",),
}
# The standard library's own table, without the machine's /etc/mime.types, so that every host names a
# file alike: for types outside EXTENSIONS, and to tell a known extension from a dot in a name.
_STANDARD_TYPES = mimetypes.MimeTypes()
_DOTS = re.compile(r"\.{2,}")
_EDGE_DOTS_AND_SPACES = re.compile(r"^[\s.]+|[\s.]+$")


def extension_for(content_type: str | None) -> str | None:
    """The usual extension of a media type (".jpg"), or None when it has no known one."""
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    known = EXTENSIONS.get(media_type)
    if known:
        return known[0]
    return _STANDARD_TYPES.guess_extension(media_type, strict=False)


def safe_file_name(name: str | None) -> str:
    """`name` reduced to a file name safe on any file system; "" when nothing usable is left."""
    if not name:
        return ""
    name = sanitize_filename(unicodedata.normalize("NFC", name))  # last path segment, no control characters
    name = sanitize_for_every_platform(name, platform="universal", replacement_text="_")
    name = _EDGE_DOTS_AND_SPACES.sub("", _DOTS.sub(".", name))
    return _bounded(name)


def attachment_file_name(*, name: str | None, url: str | None, index: int, content_type: str | None) -> str:
    """The name consumers read for an attachment (see the module docstring)."""
    base = safe_file_name(name) or safe_file_name(_last_segment(url)) or f"{FALLBACK_STEM}-{index}"
    extension = extension_for(content_type)
    if extension is None:
        return base
    stem, current = os.path.splitext(base)
    if current.lower() in EXTENSIONS.get(_media_type(content_type), (extension,)):
        return base
    named = stem if current and _is_known_extension(current) else base
    return _bounded(named + extension, extension) or f"{FALLBACK_STEM}-{index}{extension}"


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_known_extension(extension: str) -> bool:
    lowered = extension.lower()
    if any(lowered in extensions for extensions in EXTENSIONS.values()):
        return True
    guessed, _ = _STANDARD_TYPES.guess_type("name" + lowered, strict=False)
    return guessed is not None


def _last_segment(url: str | None) -> str | None:
    if not url:
        return None
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return unquote(path.rpartition("/")[2]) or None  # ".../" has no last segment


def _bounded(name: str, extension: str | None = None) -> str:
    """`name` cut to MAX_NAME_BYTES of UTF-8, keeping its extension (a short one) whole."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, kept = os.path.splitext(name)
    if extension is None and len(kept) > _MAX_EXTENSION_CHARS:
        stem, kept = name, ""
    budget = MAX_NAME_BYTES - len(kept.encode())
    cut = _EDGE_DOTS_AND_SPACES.sub("", stem.encode()[:budget].decode("utf-8", "ignore"))
    return cut + kept if cut else ""
