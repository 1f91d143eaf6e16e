"""Sample media files built in code, for the media pipeline's tests.

Every builder returns bytes; `write` puts them on disk. Images come from Pillow. The other formats are
the smallest byte strings libmagic recognizes as their type: they are for sniffing, not for playing.
`ALLOWED` lists one sample per type of seed 001's allowlist with the canonical type it must sniff as.
"""

from __future__ import annotations

import io
import random
import struct
import wave
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageCms
from PIL.ExifTags import GPS, IFD, Base
from PIL.PngImagePlugin import PngInfo

HTML_TAIL = b"<html><body><script>alert(document.cookie)</script></body></html>"


def write(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


# Images ------------------------------------------------------------------------------------------------


def encode(image: Image.Image, pillow_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (64, 48), *, seed: int = 0) -> Image.Image:
    """Random RGB noise: thousands of colours like a photo, and next to incompressible."""
    width, height = size
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(width * height * 3))


def two_tone(
    size: tuple[int, int], top: tuple[int, int, int] = (255, 0, 0), bottom: tuple[int, int, int] = (0, 0, 255)
) -> Image.Image:
    """Top half one colour, bottom half another, to tell which way an image was turned."""
    width, height = size
    image = Image.new("RGB", size, bottom)
    image.paste(top, (0, 0, width, height // 2))
    return image


def jpeg(size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    return encode(two_tone(size), "JPEG", quality=90, **options)


def jpeg_with_private_metadata(size: tuple[int, int] = (40, 80), orientation: int = 6) -> bytes:
    """A tall two-tone JPEG carrying GPS EXIF, camera details, an orientation tag, a comment, XMP and an
    ICC profile. Orientation 6 means "turn 90 degrees clockwise to display", so it shows 80 wide, 40 high,
    red on the right."""
    exif = Image.Exif()
    exif[Base.Make] = "SampleCam"
    exif[Base.Model] = "Model 7"
    exif[Base.Orientation] = orientation
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "N"
    gps[GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[GPS.GPSLongitudeRef] = "E"
    gps[GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return jpeg(size, exif=exif, comment=b"private comment", xmp=xmp, icc_profile=icc)


def jpeg_with_html_tail() -> bytes:
    return jpeg() + HTML_TAIL


def truncated_jpeg() -> bytes:
    whole = encode(photo((64, 64)), "JPEG", quality=90)
    return whole[: len(whole) // 2]


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")


def png(size: tuple[int, int] = (32, 32), mode: str = "RGBA") -> bytes:
    color = {"RGBA": (0, 128, 255, 128), "RGB": (0, 128, 255), "P": 3, "L": 200}[mode]
    return encode(Image.new(mode, size, color), "PNG")


def png_with_text_chunks() -> bytes:
    """A half-transparent PNG with tEXt, iTXt and eXIf chunks."""
    info = PngInfo()
    info.add_text("Comment", "private comment")
    info.add_itxt("Author", "Jane Doe")
    exif = Image.Exif()
    exif.get_ifd(IFD.GPSInfo)[GPS.GPSLatitudeRef] = "N"
    return encode(Image.new("RGBA", (16, 16), (255, 0, 0, 100)), "PNG", pnginfo=info, exif=exif)


def png_header_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header declaring the given size, followed by almost no pixel data: the shape of
    a decompression bomb, which must be refused from the header alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def gif() -> bytes:
    return encode(Image.new("P", (16, 16), 1), "GIF")


def _animation_frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    return [Image.new("RGB", size, colors[index % len(colors)]) for index in range(count)]


def animated_gif(frames: int = 3, size: tuple[int, int] = (24, 24), duration: int = 120) -> bytes:
    images = _animation_frames(frames, size)
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def webp() -> bytes:
    return encode(two_tone((32, 32)), "WEBP", quality=90)


def animated_webp(frames: int = 3, size: tuple[int, int] = (24, 24), duration: int = 120) -> bytes:
    images = _animation_frames(frames, size)
    return encode(images[0], "WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0)


def animated_png(frames: int = 3, size: tuple[int, int] = (24, 24), duration: int = 120) -> bytes:
    images = _animation_frames(frames, size)
    return encode(images[0], "PNG", save_all=True, append_images=images[1:], duration=duration, loop=0)


def bmp(size: tuple[int, int] = (32, 24), *, photographic: bool = False) -> bytes:
    return encode(photo(size) if photographic else two_tone(size), "BMP")


def tiff(size: tuple[int, int] = (32, 24), *, photographic: bool = False) -> bytes:
    return encode(photo(size) if photographic else two_tone(size), "TIFF")


def avif() -> bytes:
    return encode(two_tone((32, 24)), "AVIF")


def ico() -> bytes:
    return encode(Image.new("RGBA", (32, 32), (255, 0, 0, 128)), "ICO", sizes=[(32, 32)])


def svg() -> bytes:
    return (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(document.cookie)</script></svg>'
    )


def svg_after_comment() -> bytes:
    """An SVG that libmagic alone calls text/plain."""
    return b'<!-- drawn by hand -->\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>\n'


def html_page() -> bytes:
    return b"<!DOCTYPE html>\n<html><head><title>Hi</title></head><body>" + HTML_TAIL + b"</body></html>\n"


# Audio, video, documents -----------------------------------------------------------------------------


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4() -> bytes:
    return _box(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41") + _box(b"free", b"")


def mov() -> bytes:
    return _box(b"ftyp", b"qt  \0\0\x02\0qt  ") + _box(b"wide", b"")


def avi() -> bytes:
    header_list = b"LIST" + struct.pack("<I", 4) + b"hdrl"
    return b"RIFF" + struct.pack("<I", 4 + len(header_list)) + b"AVI " + header_list


def wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 800)
    return buffer.getvalue()


def mp3() -> bytes:
    # An ID3v2 tag, then silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, 417 bytes each).
    frame = b"\xff\xfb\x90\x64" + b"\0" * 413
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * 3


def aac() -> bytes:
    # ADTS frames: sync word, MPEG-4 AAC LC, 44.1 kHz, stereo, 16 bytes each.
    return (bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC]) + b"\0" * 9) * 4


def pdf(size: int | None = None) -> bytes:
    """A minimal PDF; with `size`, padded with a comment to exactly that many bytes."""
    document = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    if size is None:
        return document
    return document + b"%" + b" " * (size - len(document) - 2) + b"\n"


def vcard() -> bytes:
    return b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jane Doe\r\nTEL;TYPE=CELL:+15551234567\r\nEND:VCARD\r\n"


def plain_text(size: int | None = None) -> bytes:
    """A short note; with `size`, repeated lines cut to exactly that many bytes."""
    line = b"The quick brown fox jumps over the lazy dog. 0123456789\n"
    if size is None:
        return line
    return (line * (size // len(line) + 1))[:size]


# Executables -------------------------------------------------------------------------------------------


def elf_executable() -> bytes:
    identification = b"\x7fELF\x02\x01\x01\0" + b"\0" * 8  # 64-bit, little-endian
    return identification + struct.pack("<HHI", 2, 0x3E, 1) + b"\0" * 40  # ET_EXEC, x86-64


def pe_executable() -> bytes:
    dos_header = b"MZ" + b"\0" * 58 + struct.pack("<I", 64)  # e_lfanew points just past it
    return dos_header + b"PE\0\0" + struct.pack("<HH", 0x14C, 0) + b"\0" * 200


ALLOWED: dict[str, tuple[Callable[[], bytes], str]] = {
    "photo.jpg": (jpeg, "image/jpeg"),
    "logo.png": (png, "image/png"),
    "still.gif": (gif, "image/gif"),
    "picture.webp": (webp, "image/webp"),
    "clip.mp4": (mp4, "video/mp4"),
    "clip.mov": (mov, "video/quicktime"),
    "clip.avi": (avi, "video/x-msvideo"),
    "song.mp3": (mp3, "audio/mpeg"),
    "voice.wav": (wav, "audio/wav"),
    "voice.aac": (aac, "audio/aac"),
    "document.pdf": (pdf, "application/pdf"),
    "note.txt": (plain_text, "text/plain"),
    "contact.vcf": (vcard, "text/vcard"),
}
