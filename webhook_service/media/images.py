"""The Pillow half of media checking: decode within pixel limits, drop metadata, encode again.

Every image is rebuilt from its decoded pixels, so nothing a sender put around those pixels survives:
EXIF (GPS included), XMP, comments, PNG text chunks, colour profiles, extra JPEG pictures (MPO), and any
bytes appended after the image data (an HTML tail, a polyglot). The module knows nothing about policies or
HTTP; `webhook_service.media.validation` turns its exceptions into rejections.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO, Any, cast

from PIL import Image, ImageCms, ImageOps, ImageSequence

from webhook_service.media import scratch

# A file only ever reaches the Pillow decoder of the type libmagic found in it, never whichever of
# Pillow's many plugins would claim it: that keeps rarely used, rarely fuzzed decoders out of reach.
_PILLOW_FORMAT_BY_TYPE = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/vnd.microsoft.icon": "ICO",
    "image/avif": "AVIF",
    "image/heic": "HEIF",  # only when a HEIF plugin (pillow-heif) has registered itself
    "image/heif": "HEIF",
}

_TYPE_BY_OUTPUT_FORMAT = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_EXTENSION_BY_OUTPUT_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}

# The types that are decoded and written back in their own format.
REENCODED_TYPES = frozenset(_TYPE_BY_OUTPUT_FORMAT.values())

# Formats whose animation is kept (APNG is a PNG); any other multi-frame file keeps its first frame.
_ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})

# What Pillow's decoders raise on malformed or truncated input.
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

# Photos have thousands of colours; screenshots, logos and drawings stay under this and compress better
# (and stay sharp) as PNG.
_GRAPHIC_MAX_COLORS = 256

# Lossy fallbacks tried in turn when an encode at the configured quality is over the byte limit.
_FALLBACK_QUALITIES = (80, 70, 60)

_PNG_SAVABLE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})

# Downscaling: each step shrinks the sides by at least 10%, so the loop always ends; below this many
# pixels on a side an image is no longer worth sending.
_MAX_SCALE_STEP = 0.9
_MIN_SIDE = 16
# While downscaling, an encode may run this many times past the limit before it is cut off: enough to
# measure how far over it is, without writing an unbounded file.
_PROBE_CAP_FACTOR = 4

# Pillow keeps pixels in blocks of 16 MiB by default. glibc serves blocks that size from per-thread
# arenas and keeps them when freed, so every download thread ends up holding a large image's worth of
# memory whether or not max_concurrent_decodes let it decode at the same time as the others. Blocks
# above glibc's largest mmap threshold (32 MiB) are mapped and unmapped instead; small images still
# take only what they need. Eight threads re-encoding 36-megapixel JPEGs two at a time peaked at
# 590 MiB this way against 1950 MiB with the default blocks.
_PILLOW_BLOCK_BYTES = 64 * 1024 * 1024
Image.core.set_block_size(_PILLOW_BLOCK_BYTES)


class ImageTooLarge(Exception):
    """The image has more pixels than allowed (a decompression bomb, or just too big to handle)."""


class ImageUnreadable(Exception):
    """The data could not be decoded as the image type it was sniffed as."""


class EncodedImageTooLarge(Exception):
    """Every encoding tried came out over the byte limit."""


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int  # of one frame, checked from the header before decoding
    max_animation_pixels: int  # summed over all frames: bounds the memory and time an animation takes
    max_bytes: int  # of the encoded output
    quality: int  # JPEG and WebP quality of the first encode
    # Images decoded at once in this process, whatever the thread count: a decoded frame can take some
    # 160 MB (max_pixels x 4 bytes), and decoding is CPU work that more threads than cores do not hurry.
    max_concurrent_decodes: int


@dataclass(frozen=True)
class EncodedImage:
    path: Path
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class _Picture:
    frames: list[Image.Image]
    durations: list[float] | None = None  # milliseconds per frame, for animations
    loop: int | None = None  # None: play once (a GIF without a loop extension)

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    def fitted_to(self, target_format: str) -> _Picture:
        return _Picture([_fit_mode(frame, target_format) for frame in self.frames], self.durations, self.loop)

    def resized(self, size: tuple[int, int]) -> _Picture:
        frames = [frame.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0) for frame in self.frames]
        return _Picture(frames, self.durations, self.loop)


def decodable_image_types() -> frozenset[str]:
    """Image types this process can decode (HEIC appears once a HEIF plugin is registered)."""
    Image.init()
    return frozenset(
        content_type for content_type, pillow_format in _PILLOW_FORMAT_BY_TYPE.items() if pillow_format in Image.OPEN
    )


def reencode_image(
    source: Path, *, content_type: str, limits: ImageLimits, workdir: Path, keep_format: bool, downscale: bool
) -> EncodedImage:
    """Decode `source` (sniffed as `content_type`) and write its pixels to a new file in `workdir`.

    keep_format: write the same format, keeping animation; otherwise write PNG or JPEG, whichever suits
    the pixels. downscale: shrink the image step by step until it fits `limits.max_bytes` instead of
    raising EncodedImageTooLarge. The caller owns the returned file; nothing is left behind on errors.
    """
    source_format = _PILLOW_FORMAT_BY_TYPE[content_type]
    with _decode_slots(limits.max_concurrent_decodes):
        with _decoding_errors(limits.max_pixels):
            picture = _decode(source, source_format, limits, keep_animation=keep_format)
            target_format = source_format if keep_format else _carrier_format(picture.frames[0])
            picture = picture.fitted_to(target_format)
        return _write(picture, target_format, workdir, limits, downscale)


@functools.cache
def _decode_slots(count: int) -> threading.BoundedSemaphore:
    """The process's slots for `count` concurrent decodes (one semaphore per configured count)."""
    return threading.BoundedSemaphore(count)


@contextlib.contextmanager
def _decoding_errors(max_pixels: int) -> Iterator[None]:
    try:
        yield
    except Image.DecompressionBombError as exc:
        # Pillow's own bomb check fires inside Image.open, before the header can be looked at.
        raise ImageTooLarge(f"Image exceeds the maximum of {max_pixels:,} pixels") from exc
    except _DECODER_ERRORS as exc:
        raise ImageUnreadable("Image data is corrupt or truncated") from exc


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"Image is {width}x{height} pixels, over the maximum of {max_pixels:,} pixels")


def _decode(source: Path, source_format: str, limits: ImageLimits, *, keep_animation: bool) -> _Picture:
    with Image.open(source, formats=[source_format]) as opened:
        _check_pixels(opened.size, limits.max_pixels)
        if keep_animation and source_format in _ANIMATED_FORMATS and getattr(opened, "is_animated", False):
            return _decode_animation(opened, source_format, limits)
        return _Picture([_decode_still(opened)])


def _decode_still(opened: Image.Image) -> Image.Image:
    """The first frame's pixels, upright and in sRGB, independent of the file (closed after this)."""
    profile = opened.info.get("icc_profile")
    ImageOps.exif_transpose(opened, in_place=True)  # turned the way the camera meant it, without a copy
    still = _in_srgb(opened, profile)
    return _without_metadata(still.copy() if still is opened else still)


def _decode_animation(opened: Image.Image, target_format: str, limits: ImageLimits) -> _Picture:
    """Every frame, composited as shown; frames are fitted to the target format as they come in, so a
    GIF holds one byte per pixel rather than Pillow's RGB(A) frames."""
    frames: list[Image.Image] = []
    durations: list[float] = []
    loop = opened.info.get("loop")
    decoded_pixels = 0
    for frame in ImageSequence.Iterator(opened):
        # A GIF frame may enlarge the canvas, so every frame is checked, and the running total stops a
        # file of many small frames before it fills memory.
        _check_pixels(frame.size, limits.max_pixels)
        decoded_pixels += frame.size[0] * frame.size[1]
        if decoded_pixels > limits.max_animation_pixels:
            raise ImageTooLarge(
                f"Animation exceeds the maximum of {limits.max_animation_pixels:,} pixels across its frames"
            )
        decoded = frame.copy()  # WebP sets the frame's duration only once the frame is decoded
        durations.append(frame.info.get("duration") or 0)
        frames.append(_fit_mode(_without_metadata(decoded), target_format))
    return _Picture(frames, durations, loop)


def _in_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Bake an embedded colour profile into sRGB pixels, so dropping the profile keeps the colours.

    The profile itself is never copied to the output: it is an arbitrary blob the sender controls (device
    names, private tags, room for a payload), and phones that ignore profiles show sRGB pixels right.
    """
    if icc_profile and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            source_profile = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
            output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
            # A fresh sRGB profile per call: LittleCMS profile handles are not meant to be shared
            # between threads, and building one costs microseconds.
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source_profile, srgb, outputMode=output_mode)
            if converted is not None:  # None only for in-place conversions, which this is not
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile is dropped like any other metadata
    if image.mode == "CMYK":
        return image.convert("RGB")  # phones render CMYK JPEGs badly or not at all
    return image


def _without_metadata(image: Image.Image) -> Image.Image:
    # Pillow writes some of `info` back when saving (comments, profiles, EXIF, XMP); only the
    # transparency is part of the picture itself.
    image.info = {key: image.info[key] for key in ("transparency",) if key in image.info}
    return image


def _carrier_format(image: Image.Image) -> str:
    """JPEG for photos (far smaller); PNG for transparency, palettes, deep greys and flat graphics."""
    if image.mode in ("RGB", "L") and image.getcolors(_GRAPHIC_MAX_COLORS) is None:
        return "JPEG"
    return "PNG"


def _fit_mode(image: Image.Image, target_format: str) -> Image.Image:
    if target_format == "JPEG" and image.mode not in ("L", "RGB"):
        return image.convert("RGB")
    if target_format == "PNG" and image.mode not in _PNG_SAVABLE_MODES:
        return image.convert("RGBA" if "A" in image.mode else "RGB")
    if target_format == "GIF" and image.mode in ("RGB", "RGBA"):
        return _gif_palette(image)
    return image


def _gif_palette(frame: Image.Image) -> Image.Image:
    """Reduce a full-colour animation frame to a palette, as a GIF needs.

    Pillow decodes every GIF frame after the first to RGB(A); quantizing right away keeps one byte per
    pixel in memory, and the fast octree method is about 75 times quicker than Pillow's default median
    cut, which dominated the time of re-encoding long animations.
    """
    quantized = frame.quantize(256, method=Image.Quantize.FASTOCTREE)
    if frame.mode == "RGBA" and quantized.palette is not None:
        for rgba, index in quantized.palette.colors.items():
            if rgba[3] == 0:
                quantized.info["transparency"] = index
                break
    return quantized


def _write(picture: _Picture, target_format: str, workdir: Path, limits: ImageLimits, downscale: bool) -> EncodedImage:
    # A scratch file: a disk that fills while it is written raises ScratchSpaceUnavailable, not the
    # OSError that would read as a corrupt image.
    path, output = scratch.create_unique(workdir, "media-", _EXTENSION_BY_OUTPUT_FORMAT[target_format])
    try:
        with output:
            width, height = _encode_within_limit(picture, target_format, output, limits, downscale)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return EncodedImage(path, _TYPE_BY_OUTPUT_FORMAT[target_format], width, height)


def _encode_within_limit(
    picture: _Picture, target_format: str, output: IO[bytes], limits: ImageLimits, downscale: bool
) -> tuple[int, int]:
    """Encode at the configured quality, then with smaller settings, then (if allowed) smaller sizes.

    Returns the dimensions written. Downscaling starts from the original pixels each time (no blur
    piling up) and uses the most compact setting, sizing each step from how far over the last try was.
    """
    settings = _encoder_settings(target_format, limits.quality)
    cap = limits.max_bytes * _PROBE_CAP_FACTOR if downscale else limits.max_bytes + 1
    for setting in settings:
        size = _encode(picture, target_format, setting, output, cap)
        if size <= limits.max_bytes:
            return picture.size
    if not downscale:
        raise EncodedImageTooLarge
    width, height = picture.size
    scale = 1.0
    while True:
        # Encoded size grows roughly with the pixel count, i.e. with the square of the scale.
        scale *= min(_MAX_SCALE_STEP, 0.95 * math.sqrt(limits.max_bytes / size))
        new_size = (round(width * scale), round(height * scale))
        if min(new_size) < _MIN_SIDE:
            raise EncodedImageTooLarge
        size = _encode(picture.resized(new_size), target_format, settings[-1], output, cap)
        if size <= limits.max_bytes:
            return new_size


def _encoder_settings(target_format: str, quality: int) -> list[dict[str, Any]]:
    if target_format in ("JPEG", "WEBP"):
        return [{"quality": quality}] + [{"quality": lower} for lower in _FALLBACK_QUALITIES if lower < quality]
    # PNG and GIF are lossless: the only fallback is to work harder at compressing.
    return [{}, {"optimize": True}]


def _encode(picture: _Picture, target_format: str, setting: dict[str, Any], output: IO[bytes], cap: int) -> int:
    """Write `picture` over `output`; return the encoded size, or `cap` if the encode was cut off there."""
    if output.tell():  # an earlier, larger try: start over (the first try writes to the file as it is)
        output.seek(0)
        output.truncate()
    options = dict(setting)
    if len(picture.frames) > 1:
        options.update(save_all=True, append_images=picture.frames[1:], duration=picture.durations)
        if picture.loop is not None:
            options["loop"] = picture.loop
    try:
        # A file object by duck typing: write, seek, tell and flush, but deliberately no fileno().
        capped = cast(IO[bytes], _CappedWriter(output, cap))
        picture.frames[0].save(capped, format=target_format, **options)
    except _OutputOverCap:
        return cap
    output.flush()
    return os.fstat(output.fileno()).st_size


class _OutputOverCap(Exception):
    pass


class _CappedWriter:
    """Write-through file wrapper that stops an encode as soon as its output passes `cap` bytes.

    It deliberately has no fileno(): Pillow would hand the descriptor to the C encoder and bypass write().
    """

    def __init__(self, file: IO[bytes], cap: int) -> None:
        self._file = file
        self._cap = cap

    def write(self, data: bytes) -> int:
        if self._file.tell() + len(data) > self._cap:
            raise _OutputOverCap
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def flush(self) -> None:
        self._file.flush()
