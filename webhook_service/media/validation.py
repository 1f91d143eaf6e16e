"""Decides whether a media file may be stored, and in what form.

Shared by the inbound attachment worker and the outbound upload API. The type libmagic finds in the bytes
is the truth that is stored and served; the type the sender declared is only recorded beside it. Images
are rebuilt from their pixels (see `webhook_service.media.images`) so no metadata or smuggled bytes
survive.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import magic
from PIL import Image

from webhook_service.config.cpus import available_cpus
from webhook_service.config.model import DEFAULT_ALLOWED_MEDIA_TYPES
from webhook_service.media import images

# Seed 001's supported formats (the configuration's default).
DEFAULT_ALLOWED_TYPES = frozenset(DEFAULT_ALLOWED_MEDIA_TYPES)

# Other spellings of the same types, from libmagic (audio/x-wav, audio/x-hx-aac-adts, image/x-ms-bmp on
# older releases), from senders and providers, and from deprecated registrations.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/x-icon": "image/vnd.microsoft.icon",
    "image/x-tiff": "image/tiff",
    "video/avi": "video/x-msvideo",
    "video/msvideo": "video/x-msvideo",
    "video/vnd.avi": "video/x-msvideo",
    "video/x-quicktime": "video/quicktime",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-pn-wav": "audio/wav",
    "audio/x-aac": "audio/aac",
    "audio/aacp": "audio/aac",
    "audio/x-hx-aac-adts": "audio/aac",
    "audio/x-hx-aac-adif": "audio/aac",
    "audio/mp3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-mpeg-3": "audio/mpeg",
    "audio/mpg": "audio/mpeg",
    "text/x-vcard": "text/vcard",
    "text/directory": "text/vcard",
    "application/x-pdf": "application/pdf",
}

_MIB = 1024 * 1024
# convert_for_carriers takes sources up to this many times the media limit (the upload API's request cap
# is made from it too, so the two agree).
CONVERT_INPUT_FACTOR = 4

# magic.h's MAGIC_PARAM_ENCODING_MAX; python-magic 0.4.27 does not export the name.
_MAGIC_PARAM_ENCODING_MAX = getattr(magic, "MAGIC_PARAM_ENCODING_MAX", 7)
# libmagic's own default encoding window.
_FIRST_ENCODING_WINDOW = 64 * 1024

# Types that are markup already; a text file is scanned for markup only when libmagic saw none.
_MARKUP_TYPES = frozenset({"text/html", "text/xml", "image/svg+xml", "application/xml", "application/xhtml+xml"})

# Start tags that make a browser treat text as HTML (the WHATWG sniffing list) or that carry active
# content, and the XML declaration. "<" must touch the name, as HTML's tokenizer requires.
_MARKUP_TAG = re.compile(
    r"<(?:!doctype\s{1,16})?(?P<name>\?xml|html|head|body|title|script|style|iframe|frameset|frame|object"
    r"|embed|applet|svg|math|img|video|audio|form|input|button|meta|link|base|div|font|table|h[1-6]|a|b|br|p)"
    r"[\s/>]",
    re.IGNORECASE,
)
_SCAN_CHUNK_BYTES = 256 * 1024
# Longer than anything _MARKUP_TAG matches, so a tag cut by a chunk boundary is still seen whole.
_SCAN_OVERLAP_CHARS = 64


@dataclass(frozen=True)
class MediaPolicy:
    allowed_types: frozenset[str] = DEFAULT_ALLOWED_TYPES  # canonical MIME types
    max_bytes: int = 5 * _MIB  # exactly this many bytes pass, one more is rejected
    max_image_pixels: int = 40_000_000  # of one frame, checked from the header before decoding
    jpeg_quality: int = 90  # also used for WebP
    # Summed over an animation's frames: decoded frames are held in memory until the encode.
    max_animation_pixels: int = 50_000_000
    # Images decoded and re-encoded at once in one process (see images.ImageLimits).
    max_concurrent_decodes: int = dataclasses.field(default_factory=available_cpus)

    def __post_init__(self) -> None:
        # Configuration may spell types with aliases, capitals or parameters; only canonical forms compare.
        object.__setattr__(
            self, "allowed_types", frozenset(canonical_content_type(name) for name in self.allowed_types)
        )
        for setting in ("max_bytes", "max_image_pixels", "max_animation_pixels", "max_concurrent_decodes"):
            if getattr(self, setting) < 1:
                raise ValueError(f"MediaPolicy.{setting} must be positive")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError("MediaPolicy.jpeg_quality must be between 1 and 95")
        # Pillow checks its own limit inside Image.open, before this policy's limit can be applied: with a
        # higher policy limit, Pillow would warn about or refuse images this policy lets through.
        if Image.MAX_IMAGE_PIXELS is not None and self.max_image_pixels > Image.MAX_IMAGE_PIXELS:
            raise ValueError(
                f"MediaPolicy.max_image_pixels must not exceed PIL.Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS:,})"
            )


class MediaRejected(Exception):
    """A file that will not be stored.

    code is stable, for programs: "empty", "too_large", "type_not_allowed", "image_too_large" (pixels),
    "image_unreadable". message is the sentence for people. content_type is the sniffed type, when known.
    """

    def __init__(self, code: str, message: str, content_type: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.content_type = content_type


@dataclass(frozen=True)
class CheckedMedia:
    path: Path  # the file to store: a new sanitized file in workdir for images, else the source itself
    content_type: str  # sniffed and canonical: what is stored and served
    declared_content_type: str | None  # as the sender gave it
    size: int
    sha256: str  # of the file at `path`
    sanitized: bool  # True when rebuilt from decoded pixels
    width: int | None = None
    height: int | None = None


def canonical_content_type(mime: str) -> str:
    """Lower-case type/subtype without parameters, with known aliases mapped to one name."""
    essence = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(essence, essence)


def sniff_content_type(path: Path) -> str:
    """The canonical type of the file's content, judged by libmagic over the whole file.

    The caller caps the file size first: libmagic reads all of it. Text that libmagic calls plain (or
    vCard, or any other text type) but that holds HTML or SVG markup anywhere is reported as markup, so
    a page can never be stored as harmless text.
    """
    mime, charset = _libmagic_type(path)
    content_type = canonical_content_type(mime)
    if content_type.startswith("text/") and content_type not in _MARKUP_TYPES:
        return _embedded_markup_type(path, charset) or content_type
    return content_type


def check_media(
    source: Path,
    *,
    declared_content_type: str | None,
    policy: MediaPolicy,
    workdir: Path,
    source_sha256: str | None = None,
) -> CheckedMedia:
    """Check `source` against `policy`; raise MediaRejected, or say what to store.

    JPEG, PNG, GIF and WebP images come back as a new file in `workdir` that the caller owns (store it,
    then delete it); anything else, including image types a custom allowlist adds, comes back as
    `source` itself, unchanged. `source_sha256`, when the caller already hashed the file while
    receiving it, saves hashing it again.
    """
    _checked_size(source, policy.max_bytes)
    content_type = sniff_content_type(source)
    _require_allowed(content_type, policy)
    declared = _declared(declared_content_type)
    if content_type in images.REENCODED_TYPES:
        return _reencoded(source, content_type, declared, policy, workdir, keep_format=True, downscale=False)
    return _unchanged(source, content_type, declared, source_sha256)


def convert_for_carriers(
    source: Path,
    *,
    declared_content_type: str | None,
    policy: MediaPolicy,
    workdir: Path,
    max_input_bytes: int | None = None,
) -> CheckedMedia:
    """Like check_media, but fix images instead of refusing them (the upload API's `convert: true`).

    Images of a type outside the allowlist that Pillow can read (BMP, TIFF, ICO, AVIF; HEIC with a HEIF
    plugin) become PNG or JPEG; images over the byte limit, as sent or once re-encoded, are scaled down
    until they fit. Sources may be up to `max_input_bytes` (default four times policy.max_bytes); other
    types still have to fit policy.max_bytes.
    """
    input_limit = max_input_bytes if max_input_bytes is not None else CONVERT_INPUT_FACTOR * policy.max_bytes
    if input_limit < policy.max_bytes:
        raise ValueError("max_input_bytes must be at least policy.max_bytes")
    size = _checked_size(source, input_limit)
    content_type = sniff_content_type(source)
    declared = _declared(declared_content_type)
    if content_type in policy.allowed_types and content_type in images.REENCODED_TYPES:
        return _reencoded(source, content_type, declared, policy, workdir, keep_format=True, downscale=True)
    if content_type not in policy.allowed_types and content_type in images.decodable_image_types():
        return _reencoded(source, content_type, declared, policy, workdir, keep_format=False, downscale=True)
    _require_allowed(content_type, policy)
    if size > policy.max_bytes:
        raise too_large_rejection(policy.max_bytes, content_type)
    return _unchanged(source, content_type, declared)


_handles = threading.local()


def _magic() -> magic.Magic:
    """This thread's libmagic handle. One per thread rather than one shared behind a lock: a sniff of
    a 5 MiB file takes tens of milliseconds, which concurrent downloads should not queue for (ctypes
    releases the GIL while libmagic works)."""
    handle = getattr(_handles, "magic", None)
    if handle is None:
        handle = _handles.magic = magic.Magic(mime=True, mime_encoding=True)
    return handle


def _libmagic_type(path: Path) -> tuple[str, str]:
    """libmagic's MIME type and charset for the file, judged over all of it."""
    # libmagic reads only the first 7 MiB and judges a text encoding from the first 64 KiB by default:
    # binary bytes or markup past those windows would go unseen, so the windows are widened to the file.
    # Judging the encoding of 5 MiB costs some 1.5 ms, though, and is needed only for text: a verdict of
    # "binary" on a prefix cannot change with more bytes (text means every byte is text), so the first
    # look takes the default window and only files that look like text are judged again, whole.
    size = max(path.stat().st_size, 1)
    handle = _magic()
    handle.setparam(magic.MAGIC_PARAM_BYTES_MAX, size)
    handle.setparam(_MAGIC_PARAM_ENCODING_MAX, min(size, _FIRST_ENCODING_WINDOW))
    mime, charset = _mime_and_charset(handle.from_file(str(path)))
    if charset != "binary" and size > _FIRST_ENCODING_WINDOW:
        handle.setparam(_MAGIC_PARAM_ENCODING_MAX, size)
        mime, charset = _mime_and_charset(handle.from_file(str(path)))
    return mime, charset


def _mime_and_charset(description: str) -> tuple[str, str]:
    mime, _, parameters = description.partition(";")
    return mime, parameters.strip().removeprefix("charset=")


def _embedded_markup_type(path: Path, charset: str) -> str | None:
    saw_xml_declaration = False
    for text in _decoded_text(path, charset):
        for match in _MARKUP_TAG.finditer(text):
            name = match["name"].lower()
            if name == "svg":
                return "image/svg+xml"
            if name != "?xml":
                return "text/html"
            saw_xml_declaration = True
    return "text/xml" if saw_xml_declaration else None


def _decoded_text(path: Path, charset: str) -> Iterator[str]:
    """The file's text in overlapping pieces, decoded with the charset libmagic found.

    Decoding first matters: markup in UTF-16 or UTF-7 is invisible to a byte search.
    """
    try:
        decoder = codecs.getincrementaldecoder(charset)(errors="replace")
    except LookupError:  # "unknown-8bit" and the like: Latin-1 still maps every byte to one character
        decoder = codecs.getincrementaldecoder("latin-1")()
    carried = ""
    with path.open("rb") as stream:
        while chunk := stream.read(_SCAN_CHUNK_BYTES):
            text = carried + decoder.decode(chunk)
            yield text
            carried = text[-_SCAN_OVERLAP_CHARS:]
    yield carried + decoder.decode(b"", final=True)


def _checked_size(path: Path, limit: int) -> int:
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected("empty", "Media file is empty")
    if size > limit:
        raise too_large_rejection(limit)
    return size


def too_large_rejection(limit: int, content_type: str | None = None) -> MediaRejected:
    return MediaRejected("too_large", f"Media file exceeds maximum size of {_size_label(limit)}", content_type)


def _size_label(size: int) -> str:
    """5 MiB reads "5MB", as in seed 001; limits that are no whole number of units keep every byte."""
    for unit, factor in (("GB", 1024 * _MIB), ("MB", _MIB), ("KB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size:,} bytes"


def _require_allowed(content_type: str, policy: MediaPolicy) -> None:
    if content_type not in policy.allowed_types:
        raise MediaRejected("type_not_allowed", f"Unsupported media type: {content_type}", content_type)


def _declared(declared_content_type: str | None) -> str | None:
    return (declared_content_type or "").strip() or None


def _unchanged(source: Path, content_type: str, declared: str | None, known_sha256: str | None = None) -> CheckedMedia:
    size, sha256 = (source.stat().st_size, known_sha256) if known_sha256 else _size_and_sha256(source)
    return CheckedMedia(
        path=source,
        content_type=content_type,
        declared_content_type=declared,
        size=size,
        sha256=sha256,
        sanitized=False,
    )


def _reencoded(
    source: Path,
    content_type: str,
    declared: str | None,
    policy: MediaPolicy,
    workdir: Path,
    *,
    keep_format: bool,
    downscale: bool,
) -> CheckedMedia:
    limits = images.ImageLimits(
        max_pixels=policy.max_image_pixels,
        max_animation_pixels=policy.max_animation_pixels,
        max_bytes=policy.max_bytes,
        quality=policy.jpeg_quality,
        max_concurrent_decodes=policy.max_concurrent_decodes,
    )
    try:
        encoded = images.reencode_image(
            source,
            content_type=content_type,
            limits=limits,
            workdir=workdir,
            keep_format=keep_format,
            downscale=downscale,
        )
    except images.ImageTooLarge as exc:
        raise MediaRejected("image_too_large", str(exc), content_type) from exc
    except images.ImageUnreadable as exc:
        raise MediaRejected("image_unreadable", str(exc), content_type) from exc
    except images.EncodedImageTooLarge as exc:
        raise too_large_rejection(policy.max_bytes, content_type) from exc
    try:
        # A conversion target (PNG or JPEG) may itself be missing from a custom allowlist; the sender
        # hears about the type they sent.
        if encoded.content_type not in policy.allowed_types:
            raise MediaRejected("type_not_allowed", f"Unsupported media type: {content_type}", content_type)
        size, sha256 = _size_and_sha256(encoded.path)
    except BaseException:
        encoded.path.unlink(missing_ok=True)
        raise
    return CheckedMedia(
        path=encoded.path,
        content_type=encoded.content_type,
        declared_content_type=declared,
        size=size,
        sha256=sha256,
        sanitized=True,
        width=encoded.width,
        height=encoded.height,
    )


def _size_and_sha256(path: Path) -> tuple[int, str]:
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256")
        return stream.tell(), digest.hexdigest()
