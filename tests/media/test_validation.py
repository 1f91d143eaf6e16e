"""check_media's type and size rules, and the sniffing behind them (real libmagic, files built in code)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.media import samples
from webhook_service.media.validation import (
    DEFAULT_ALLOWED_TYPES,
    MediaPolicy,
    MediaRejected,
    canonical_content_type,
    check_media,
    sniff_content_type,
)

FIVE_MIB = 5 * 1024 * 1024


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    return tmp_path / "incoming"


def rejection(
    source: Path, workdir: Path, *, declared: str | None = None, policy: MediaPolicy | None = None
) -> MediaRejected:
    with pytest.raises(MediaRejected) as caught:
        check_media(source, declared_content_type=declared, policy=policy or MediaPolicy(), workdir=workdir)
    assert list(workdir.iterdir()) == [], "a rejection left files behind"
    return caught.value


@pytest.mark.parametrize("name", sorted(samples.ALLOWED))
def test_every_allowlisted_type_is_accepted_as_its_canonical_type(name: str, incoming: Path, workdir: Path) -> None:
    build, expected_type = samples.ALLOWED[name]
    source = samples.write(incoming, name, build())

    checked = check_media(source, declared_content_type=expected_type, policy=MediaPolicy(), workdir=workdir)

    assert checked.content_type == expected_type
    assert checked.declared_content_type == expected_type
    stored = checked.path.read_bytes()
    assert checked.size == len(stored)
    assert checked.sha256 == hashlib.sha256(stored).hexdigest()
    if expected_type.startswith("image/"):
        assert checked.sanitized and checked.path.parent == workdir
        assert (checked.width, checked.height) != (None, None)
    else:
        assert not checked.sanitized and checked.path == source
        assert (checked.width, checked.height) == (None, None)


def test_default_allowlist_is_seed_001s() -> None:
    assert (
        MediaPolicy().allowed_types
        == DEFAULT_ALLOWED_TYPES
        == {
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "video/mp4",
            "video/quicktime",
            "video/x-msvideo",
            "audio/mpeg",
            "audio/wav",
            "audio/aac",
            "application/pdf",
            "text/plain",
            "text/vcard",
        }
    )


def test_declared_type_that_disagrees_is_recorded_and_the_sniffed_one_wins(incoming: Path, workdir: Path) -> None:
    source = samples.write(incoming, "invoice.jpg", samples.pdf())

    checked = check_media(source, declared_content_type=" image/jpeg ", policy=MediaPolicy(), workdir=workdir)

    assert checked.content_type == "application/pdf"
    assert checked.declared_content_type == "image/jpeg"


def test_missing_declared_type_is_recorded_as_none(incoming: Path, workdir: Path) -> None:
    source = samples.write(incoming, "note", samples.plain_text())

    checked = check_media(source, declared_content_type="", policy=MediaPolicy(), workdir=workdir)

    assert checked.declared_content_type is None


@pytest.mark.parametrize(
    ("build", "declared", "sniffed"),
    [
        (samples.svg, "image/png", "image/svg+xml"),
        (samples.svg, "image/jpeg", "image/svg+xml"),
        (samples.svg_after_comment, "text/plain", "image/svg+xml"),
        (samples.html_page, "image/jpeg", "text/html"),
        (samples.elf_executable, "application/pdf", "application/x-executable"),
        (samples.pe_executable, "image/gif", "application/vnd.microsoft.portable-executable"),
        (samples.bmp, "image/bmp", "image/bmp"),
        (samples.tiff, "image/png", "image/tiff"),
    ],
    ids=["svg-as-png", "svg-as-jpeg", "svg-behind-comment", "html-as-jpeg", "elf", "pe", "bmp", "tiff"],
)
def test_sniffed_type_outside_the_allowlist_is_rejected_in_the_seeds_words(
    build, declared: str, sniffed: str, incoming: Path, workdir: Path
) -> None:
    source = samples.write(incoming, "upload", build())

    rejected = rejection(source, workdir, declared=declared)

    assert rejected.code == "type_not_allowed"
    assert rejected.message == f"Unsupported media type: {sniffed}"
    assert rejected.content_type == sniffed


@pytest.mark.parametrize("build", [samples.pdf, samples.plain_text], ids=["pdf", "text"])
def test_a_file_of_exactly_the_limit_passes_and_one_byte_more_is_rejected(build, incoming: Path, workdir: Path) -> None:
    at_limit = samples.write(incoming, "at-limit", build(FIVE_MIB))
    over_limit = samples.write(incoming, "over-limit", build(FIVE_MIB + 1))

    checked = check_media(at_limit, declared_content_type=None, policy=MediaPolicy(), workdir=workdir)
    rejected = rejection(over_limit, workdir)

    assert checked.size == 5_242_880 and checked.path == at_limit
    assert rejected.code == "too_large"
    assert rejected.message == "Media file exceeds maximum size of 5MB"


def test_the_size_limit_applies_before_anything_is_decoded(incoming: Path, workdir: Path) -> None:
    source = samples.write(incoming, "big.jpg", samples.jpeg() + b"\0" * FIVE_MIB)

    assert rejection(source, workdir).code == "too_large"


@pytest.mark.parametrize(
    ("max_bytes", "label"),
    [(1024 * 1024, "1MB"), (1536 * 1024, "1536KB"), (64 * 1024, "64KB"), (1_000_000, "1,000,000 bytes")],
)
def test_other_limits_are_named_in_the_message(max_bytes: int, label: str, incoming: Path, workdir: Path) -> None:
    source = samples.write(incoming, "big.pdf", samples.pdf(max_bytes + 1))

    rejected = rejection(source, workdir, policy=MediaPolicy(max_bytes=max_bytes))

    assert rejected.message == f"Media file exceeds maximum size of {label}"


def test_an_empty_file_is_rejected(incoming: Path, workdir: Path) -> None:
    source = samples.write(incoming, "empty.txt", b"")

    rejected = rejection(source, workdir)

    assert (rejected.code, rejected.message) == ("empty", "Media file is empty")


@pytest.mark.parametrize(
    ("mime", "canonical"),
    [
        ("audio/x-wav", "audio/wav"),
        ("audio/vnd.wave", "audio/wav"),
        ("audio/wave", "audio/wav"),
        ("audio/x-aac", "audio/aac"),
        ("audio/aacp", "audio/aac"),
        ("audio/x-hx-aac-adts", "audio/aac"),
        ("text/x-vcard", "text/vcard"),
        ("text/directory", "text/vcard"),
        ("video/avi", "video/x-msvideo"),
        ("video/msvideo", "video/x-msvideo"),
        ("image/jpg", "image/jpeg"),
        ("image/pjpeg", "image/jpeg"),
        ("audio/mp3", "audio/mpeg"),
        ("image/x-ms-bmp", "image/bmp"),
        ("Image/JPEG; charset=binary", "image/jpeg"),
        (" text/plain ; charset=utf-8", "text/plain"),
        ("application/pdf", "application/pdf"),
    ],
)
def test_canonical_content_type(mime: str, canonical: str) -> None:
    assert canonical_content_type(mime) == canonical


def test_policy_canonicalizes_configured_types_and_refuses_nonsense() -> None:
    assert MediaPolicy(allowed_types=frozenset({"Audio/X-WAV", "image/jpg; q=1"})).allowed_types == {
        "audio/wav",
        "image/jpeg",
    }
    with pytest.raises(ValueError, match="max_bytes"):
        MediaPolicy(max_bytes=0)
    with pytest.raises(ValueError, match="jpeg_quality"):
        MediaPolicy(jpeg_quality=100)
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        MediaPolicy(max_image_pixels=10**12)


class TestSniffing:
    def test_plain_text_and_vcards_keep_their_types(self, incoming: Path) -> None:
        assert sniff_content_type(samples.write(incoming, "a", samples.plain_text())) == "text/plain"
        assert sniff_content_type(samples.write(incoming, "b", "Grüße aus Köln\n".encode())) == "text/plain"
        assert sniff_content_type(samples.write(incoming, "c", samples.vcard())) == "text/vcard"
        assert sniff_content_type(samples.write(incoming, "d", samples.vcard().lower())) == "text/vcard"

    def test_the_whole_file_is_judged_not_just_its_start(self, incoming: Path) -> None:
        # libmagic's default judges the text encoding from the first 64 KiB only.
        text_with_binary_end = samples.plain_text(1024 * 1024) + b"\x00\x01\x02\x03"

        assert sniff_content_type(samples.write(incoming, "x", text_with_binary_end)) != "text/plain"

    @pytest.mark.parametrize("offset", [-2, -1, 0, 1])
    def test_a_character_cut_by_the_first_look_is_still_text(self, offset: int, incoming: Path) -> None:
        # The first look covers 64 KiB; a two-byte UTF-8 character straddling its edge must not make
        # the prefix look binary (a binary verdict is final).
        head = b"a" * (64 * 1024 + offset - 1)
        text = head + "é".encode() + "Grüße\n".encode() * 20_000

        assert sniff_content_type(samples.write(incoming, "u", text)) == "text/plain"

    @pytest.mark.parametrize(
        "text",
        [
            b"Dinner at 8?\n<script>alert(1)</script>\n",
            b"hello\n<svg/onload=alert(1)>\n",
            b"  <IFRAME src=https://example.test></iframe>",
            "<html><body><script>alert(1)</script></body></html>".encode("utf-16"),
            b"+/v8-Hello +ADw-script+AD4-alert(1)+ADw-/script+AD4-\n",
            "Grüße <b>fett</b>\n".encode("latin-1"),
            samples.plain_text(900_000) + b"<img src=x onerror=alert(1)>",
        ],
        ids=[
            "script-after-text",
            "svg-in-text",
            "iframe",
            "utf-16-page",
            "utf-7-page",
            "latin-1",
            "deep-in-a-long-text",
        ],
    )
    def test_markup_can_never_pass_as_text(self, text: bytes, incoming: Path) -> None:
        assert sniff_content_type(samples.write(incoming, "t", text)) in {"text/html", "image/svg+xml"}

    def test_a_tag_split_across_the_scan_chunks_is_still_found(self, incoming: Path) -> None:
        padding = samples.plain_text(256 * 1024 - 3)  # the tag starts three bytes before a chunk boundary

        assert sniff_content_type(samples.write(incoming, "t", padding + b"<script>x</script>")) == "text/html"

    def test_angle_brackets_in_ordinary_text_are_still_text(self, incoming: Path) -> None:
        text = b"Prices: 3 < 5 and 7 > 2. Reply <YES> to confirm, email <jane@example.test>.\n"

        assert sniff_content_type(samples.write(incoming, "t", text)) == "text/plain"

    def test_audio_aliases_come_back_canonical(self, incoming: Path) -> None:
        assert sniff_content_type(samples.write(incoming, "w", samples.wav())) == "audio/wav"
        assert sniff_content_type(samples.write(incoming, "a", samples.aac())) == "audio/aac"
