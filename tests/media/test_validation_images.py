"""Image sanitizing in check_media and image conversion in convert_for_carriers (real Pillow and libmagic)."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageSequence, features

from tests.media import samples
from webhook_service.media.validation import CheckedMedia, MediaPolicy, MediaRejected, check_media, convert_for_carriers


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    return tmp_path / "incoming"


def checked(data: bytes, incoming: Path, workdir: Path, policy: MediaPolicy | None = None) -> CheckedMedia:
    source = samples.write(incoming, "upload", data)
    return check_media(source, declared_content_type=None, policy=policy or MediaPolicy(), workdir=workdir)


def converted(
    data: bytes, incoming: Path, workdir: Path, policy: MediaPolicy | None = None, **options: int
) -> CheckedMedia:
    source = samples.write(incoming, "upload", data)
    return convert_for_carriers(
        source, declared_content_type=None, policy=policy or MediaPolicy(), workdir=workdir, **options
    )


def rejection(
    check, data: bytes, incoming: Path, workdir: Path, policy: MediaPolicy | None = None, **options: int
) -> MediaRejected:
    source = samples.write(incoming, "upload", data)
    with pytest.raises(MediaRejected) as caught:
        check(source, declared_content_type=None, policy=policy or MediaPolicy(), workdir=workdir, **options)
    assert list(workdir.iterdir()) == [], "a rejection left files behind"
    return caught.value


def reopened(result: CheckedMedia) -> Image.Image:
    """The stored file, opened from memory so no file handle stays open."""
    return Image.open(io.BytesIO(result.path.read_bytes()))


class TestMetadataIsRemoved:
    def test_jpeg_loses_all_exif_comments_xmp_and_profile(self, incoming: Path, workdir: Path) -> None:
        result = checked(samples.jpeg_with_private_metadata(), incoming, workdir)

        stored = result.path.read_bytes()
        image = reopened(result)
        assert dict(image.getexif()) == {}
        for marker in (b"Exif", b"GPS", b"SampleCam", b"private comment", b"xmpmeta", b"ICC_PROFILE"):
            assert marker not in stored
        assert not {"exif", "comment", "xmp", "icc_profile"} & set(image.info)

    def test_jpeg_orientation_is_applied_before_the_tag_is_dropped(self, incoming: Path, workdir: Path) -> None:
        result = checked(samples.jpeg_with_private_metadata(size=(40, 80), orientation=6), incoming, workdir)

        image = reopened(result).convert("RGB")
        assert (result.width, result.height) == image.size == (80, 40)
        red, _green, blue = image.getpixel((70, 20))  # the stored top (red) is on the right once turned
        assert red > 200 and blue < 60
        red, _green, blue = image.getpixel((10, 20))
        assert blue > 200 and red < 60

    def test_png_text_and_exif_chunks_are_dropped_and_transparency_kept(self, incoming: Path, workdir: Path) -> None:
        result = checked(samples.png_with_text_chunks(), incoming, workdir)

        stored = result.path.read_bytes()
        for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"private comment", b"Jane Doe"):
            assert chunk not in stored
        image = reopened(result)
        assert image.mode == "RGBA" and image.getpixel((0, 0))[3] == 100

    def test_html_appended_to_a_jpeg_does_not_survive(self, incoming: Path, workdir: Path) -> None:
        result = checked(samples.jpeg_with_html_tail(), incoming, workdir)

        stored = result.path.read_bytes()
        assert result.content_type == "image/jpeg" and result.sanitized
        assert b"<html" not in stored and b"script" not in stored
        assert stored.endswith(b"\xff\xd9")

    def test_an_unusable_colour_profile_is_dropped_not_fatal(self, incoming: Path, workdir: Path) -> None:
        result = checked(samples.jpeg(icc_profile=b"not a colour profile" * 8), incoming, workdir)

        assert "icc_profile" not in reopened(result).info
        assert b"not a colour profile" not in result.path.read_bytes()

    def test_cmyk_jpeg_is_stored_as_rgb(self, incoming: Path, workdir: Path) -> None:
        assert reopened(checked(samples.cmyk_jpeg(), incoming, workdir)).mode == "RGB"

    def test_format_is_kept(self, incoming: Path, workdir: Path) -> None:
        for data, pillow_format in (
            (samples.jpeg(), "JPEG"),
            (samples.png(), "PNG"),
            (samples.gif(), "GIF"),
            (samples.webp(), "WEBP"),
        ):
            assert reopened(checked(data, incoming, workdir)).format == pillow_format


class TestAnimation:
    @pytest.mark.parametrize(
        "build", [samples.animated_gif, samples.animated_webp, samples.animated_png], ids=["gif", "webp", "apng"]
    )
    def test_frames_durations_and_loop_are_kept(self, build, incoming: Path, workdir: Path) -> None:
        result = checked(build(frames=4, duration=120), incoming, workdir)

        image = reopened(result)
        assert image.n_frames == 4
        assert image.info.get("loop") == 0
        durations, colours = [], set()
        for frame in ImageSequence.Iterator(image):
            frame.load()  # WebP reports a frame's duration once it is decoded
            durations.append(frame.info["duration"])
            colours.add(frame.convert("RGB").getpixel((5, 5)))
        assert durations == [120] * 4
        assert len(colours) == 4

    def test_an_animation_over_the_pixel_budget_is_rejected(self, incoming: Path, workdir: Path) -> None:
        policy = MediaPolicy(max_animation_pixels=3 * 24 * 24)

        rejected = rejection(check_media, samples.animated_gif(frames=4), incoming, workdir, policy)

        assert rejected.code == "image_too_large"


class TestDecodingLimits:
    def test_a_png_declaring_50000_by_50000_is_refused_from_its_header(self, incoming: Path, workdir: Path) -> None:
        started = time.monotonic()
        rejected = rejection(check_media, samples.png_header_declaring(50_000, 50_000), incoming, workdir)

        assert time.monotonic() - started < 3  # from the header: decoding 2.5 gigapixels would take far longer
        assert rejected.code == "image_too_large"
        assert rejected.content_type == "image/png"

    def test_the_policy_limit_applies_below_pillows_own(self, incoming: Path, workdir: Path) -> None:
        started = time.monotonic()
        rejected = rejection(check_media, samples.png_header_declaring(7_000, 7_000), incoming, workdir)

        assert time.monotonic() - started < 3
        assert rejected.code == "image_too_large"
        assert "7000x7000" in rejected.message

    def test_a_truncated_jpeg_is_unreadable(self, incoming: Path, workdir: Path) -> None:
        rejected = rejection(check_media, samples.truncated_jpeg(), incoming, workdir)

        assert (rejected.code, rejected.content_type) == ("image_unreadable", "image/jpeg")

    def test_a_png_with_too_little_pixel_data_is_unreadable(self, incoming: Path, workdir: Path) -> None:
        rejected = rejection(check_media, samples.png_header_declaring(16, 16), incoming, workdir)

        assert rejected.code == "image_unreadable"


class TestReencodedSize:
    def test_a_lower_quality_is_tried_before_giving_up(self, incoming: Path, workdir: Path) -> None:
        original = samples.encode(samples.photo((200, 200)), "JPEG", quality=70)
        policy = MediaPolicy(max_bytes=len(original))  # quality 90 comes out bigger than quality 70 did

        result = checked(original, incoming, workdir, policy)

        assert result.size <= len(original)

    def test_an_image_that_cannot_fit_after_re_encoding_is_too_large(self, incoming: Path, workdir: Path) -> None:
        original = samples.encode(samples.photo((200, 200)), "JPEG", quality=20)
        policy = MediaPolicy(max_bytes=len(original))

        rejected = rejection(check_media, original, incoming, workdir, policy)

        assert rejected.code == "too_large"
        assert rejected.message == f"Media file exceeds maximum size of {len(original):,} bytes"


class TestConvertForCarriers:
    @pytest.mark.parametrize(
        ("data", "expected_type"),
        [
            (samples.bmp(), "image/png"),
            (samples.tiff(), "image/png"),
            (samples.ico(), "image/png"),
            (samples.bmp((120, 80), photographic=True), "image/jpeg"),
            (samples.tiff((120, 80), photographic=True), "image/jpeg"),
        ],
        ids=["bmp-graphic", "tiff-graphic", "ico", "bmp-photo", "tiff-photo"],
    )
    def test_images_carriers_refuse_become_png_or_jpeg(
        self, data: bytes, expected_type: str, incoming: Path, workdir: Path
    ) -> None:
        result = converted(data, incoming, workdir)

        assert result.content_type == expected_type and result.sanitized
        assert reopened(result).get_format_mimetype() == expected_type

    @pytest.mark.skipif(not features.check("avif"), reason="this Pillow was built without AVIF")
    def test_avif_becomes_jpeg_or_png(self, incoming: Path, workdir: Path) -> None:
        result = converted(samples.avif(), incoming, workdir)

        assert result.content_type in {"image/png", "image/jpeg"}
        assert (result.width, result.height) == (32, 24)

    def test_transparency_survives_conversion(self, incoming: Path, workdir: Path) -> None:
        image = reopened(converted(samples.ico(), incoming, workdir))

        assert image.mode == "RGBA" and image.getpixel((3, 3))[3] == 128

    def test_an_image_over_the_limit_is_scaled_down_until_it_fits(self, incoming: Path, workdir: Path) -> None:
        policy = MediaPolicy(max_bytes=100_000)
        original = samples.encode(samples.photo((400, 300)), "PNG")  # noise: about 360 kB

        result = converted(original, incoming, workdir, policy)

        assert result.content_type == "image/png"
        assert result.size <= 100_000 == policy.max_bytes
        assert result.width < 400 and result.height < 300
        assert abs(result.width / result.height - 4 / 3) < 0.05
        assert reopened(result).size == (result.width, result.height)

    def test_a_large_image_is_shrunk_under_the_default_5mb(self, incoming: Path, workdir: Path) -> None:
        original = samples.encode(samples.photo((2000, 1500)), "PNG")  # 9 MB of incompressible noise

        result = converted(original, incoming, workdir)

        assert result.content_type == "image/png"
        assert result.size <= 5 * 1024 * 1024
        assert result.width < 2000 and result.height < 1500

    def test_check_media_would_reject_what_conversion_shrinks(self, incoming: Path, workdir: Path) -> None:
        policy = MediaPolicy(max_bytes=100_000)
        original = samples.encode(samples.photo((400, 300)), "PNG")

        assert rejection(check_media, original, incoming, workdir, policy).code == "too_large"

    def test_animation_is_kept_while_scaling_down(self, incoming: Path, workdir: Path) -> None:
        frames = [samples.photo((120, 120), seed=seed).quantize(256) for seed in range(3)]
        original = samples.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
        policy = MediaPolicy(max_bytes=len(original) // 2)

        result = converted(original, incoming, workdir, policy)

        assert result.size <= policy.max_bytes
        assert reopened(result).n_frames == 3

    def test_metadata_is_removed_from_converted_images_too(self, incoming: Path, workdir: Path) -> None:
        result = converted(samples.jpeg_with_private_metadata(), incoming, workdir)

        assert b"GPS" not in result.path.read_bytes() and (result.width, result.height) == (80, 40)

    def test_inputs_may_exceed_the_limit_up_to_max_input_bytes(self, incoming: Path, workdir: Path) -> None:
        policy = MediaPolicy(max_bytes=64 * 1024)
        original = samples.bmp((200, 200), photographic=True)  # 120 kB

        rejected = rejection(convert_for_carriers, original, incoming, workdir, policy, max_input_bytes=100_000)
        assert rejected.message == "Media file exceeds maximum size of 100,000 bytes"
        assert converted(original, incoming, workdir, policy).size <= 64 * 1024

    def test_non_images_keep_the_normal_limit_and_allowlist(self, incoming: Path, workdir: Path) -> None:
        policy = MediaPolicy(max_bytes=64 * 1024)

        too_large = rejection(convert_for_carriers, samples.pdf(64 * 1024 + 1), incoming, workdir, policy)
        not_allowed = rejection(convert_for_carriers, samples.svg(), incoming, workdir, policy)
        unchanged = converted(samples.pdf(), incoming, workdir, policy)

        assert (too_large.code, too_large.message) == ("too_large", "Media file exceeds maximum size of 64KB")
        assert (not_allowed.code, not_allowed.content_type) == ("type_not_allowed", "image/svg+xml")
        assert unchanged.content_type == "application/pdf" and not unchanged.sanitized

    def test_conversion_needs_a_target_type_the_allowlist_has(self, incoming: Path, workdir: Path) -> None:
        policy = MediaPolicy(allowed_types=frozenset({"image/jpeg", "application/pdf"}))

        rejected = rejection(convert_for_carriers, samples.ico(), incoming, workdir, policy)

        assert rejected.message == "Unsupported media type: image/vnd.microsoft.icon"

    def test_a_corrupt_bmp_is_unreadable(self, incoming: Path, workdir: Path) -> None:
        data = samples.bmp((64, 64))

        rejected = rejection(convert_for_carriers, data[:200], incoming, workdir)

        assert (rejected.code, rejected.content_type) == ("image_unreadable", "image/bmp")


def test_stored_images_decode_cleanly(incoming: Path, workdir: Path) -> None:
    for data in (samples.jpeg(), samples.png(), samples.gif(), samples.webp(), samples.animated_gif()):
        reopened(checked(data, incoming, workdir)).verify()


@pytest.mark.parametrize("slots", [1, 2])
def test_images_decoded_at_once_are_capped_per_process(tmp_path: Path, monkeypatch, slots: int):
    """Four threads re-encode at once; only `slots` of them may hold decoded pixels at a time."""
    from webhook_service.media import images

    real_decode = images._decode
    lock = threading.Lock()
    active, most = 0, 0

    def counted_decode(*args, **kwargs):
        nonlocal active, most
        if not threading.current_thread().name.startswith("decode-cap-test"):
            # Another test's thread, still finishing its download in this process (seen once on a loaded
            # machine): it holds its own count's slots, not the ones measured here.
            return real_decode(*args, **kwargs)
        with lock:
            active += 1
            most = max(most, active)
        try:
            time.sleep(0.05)  # long enough for the other threads to arrive meanwhile
            return real_decode(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(images, "_decode", counted_decode)
    policy = MediaPolicy(max_concurrent_decodes=slots)
    data = samples.jpeg((320, 240))

    def run(index: int) -> CheckedMedia:
        source = tmp_path / f"in-{index}.jpg"
        source.write_bytes(data)
        workdir = tmp_path / f"work-{index}"
        workdir.mkdir()
        return check_media(source, declared_content_type="image/jpeg", policy=policy, workdir=workdir)

    with ThreadPoolExecutor(4, thread_name_prefix="decode-cap-test") as pool:
        results = list(pool.map(run, range(4)))
    assert all(result.sanitized and result.content_type == "image/jpeg" for result in results)
    assert most == slots


def test_the_decode_cap_must_be_positive():
    with pytest.raises(ValueError, match="max_concurrent_decodes"):
        MediaPolicy(max_concurrent_decodes=0)


_MEMORY_PROBE = """
import io, sys, threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from PIL import Image
from webhook_service.media.validation import MediaPolicy, check_media

work, slots = Path(sys.argv[1]), int(sys.argv[2])
buffer = io.BytesIO()
Image.new("RGB", (6000, 6000), (120, 30, 200)).save(buffer, "JPEG", quality=90)  # 36 MP: 103 MiB of RGB
for index in range(4):
    (work / f"{index}.jpg").write_bytes(buffer.getvalue())
    (work / f"w{index}").mkdir()
del buffer

def peak_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024

Path("/proc/self/clear_refs").write_text("5")  # start the high-water mark from here
before = peak_mib()
policy = MediaPolicy(max_concurrent_decodes=slots, max_bytes=50 * 1024 * 1024)
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda i: check_media(work / f"{i}.jpg", declared_content_type="image/jpeg",
                                         policy=policy, workdir=work / f"w{i}"), range(4)))
print(peak_mib() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc to read peak memory")
def test_memory_for_decoded_pixels_follows_the_decode_cap_not_the_thread_count(tmp_path: Path):
    """Four threads re-encode a 36-megapixel JPEG each, one decode at a time. One re-encode holds a few
    copies of the pixels (decoded, upright, converted, encoded), so the process grows by some three
    images' worth; had each thread kept its freed pixel blocks (glibc's per-thread arenas, with
    Pillow's default 16 MiB blocks), it grew by nine and a half."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(tmp_path), "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    grown_mib = int(result.stdout.strip())
    one_image_mib = 6000 * 6000 * 3 // 2**20
    assert grown_mib < 5 * one_image_mib, f"grew by {grown_mib} MiB; one image's pixels are {one_image_mib} MiB"
