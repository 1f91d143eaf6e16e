"""The file names attachments are given (model/file_names.py): always one, always safe to join to a
directory on any file system, with the sniffed type's extension once stored."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from webhook_service.model.file_names import MAX_NAME_BYTES, attachment_file_name, extension_for

WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}
TYPES = st.sampled_from([None, "image/jpeg", "image/png", "application/pdf", "text/plain", "video/mp4", "x/unknown"])


def assert_safe(name: str) -> None:
    assert name and name == name.strip() and not name.startswith(".") and not name.endswith(".")
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not any(char in '<>:"|?*' for char in name)
    assert not any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in name)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.split(".")[0].upper() not in WINDOWS_RESERVED


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    name=st.none() | st.text(max_size=400),
    url=st.none() | st.text(max_size=300),
    index=st.integers(0, 9),
    content_type=TYPES,
)
@example(name="../../etc/passwd", url=None, index=0, content_type=None)
@example(name="..", url="https://x/..", index=0, content_type=None)
@example(name="\u202egpj.exe", url=None, index=0, content_type="image/jpeg")
@example(name="CON", url=None, index=0, content_type=None)
@example(name="a" * 500 + ".jpg", url=None, index=0, content_type="image/jpeg")
@example(name="\u00e9" * 300, url=None, index=0, content_type="image/png")
@example(name=None, url="https://x/%2e%2e%2f%2e%2e%2fetc%2fpasswd", index=0, content_type=None)
@example(name=None, url="https://x/a%00b%0a.png", index=0, content_type=None)
@example(name="C:\\Windows\\win.ini", url=None, index=0, content_type=None)
@example(name=" . ", url="https://x/ . /", index=3, content_type=None)
def test_every_name_is_safe_and_stable(name, url, index, content_type):
    made = attachment_file_name(name=name, url=url, index=index, content_type=content_type)
    assert_safe(made)
    assert made == attachment_file_name(name=name, url=url, index=index, content_type=content_type)
    extension = extension_for(content_type)
    if extension:
        assert made.lower().endswith(extension) or made.lower().endswith((".jpeg", ".jpe", ".jfif"))


TWILIO_MEDIA = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME0a0b"


@pytest.mark.parametrize(
    ("name", "url", "content_type", "expected"),
    [
        (None, TWILIO_MEDIA, None, "ME0a0b"),  # pending: no extension from the declared type
        (None, TWILIO_MEDIA, "image/jpeg", "ME0a0b.jpg"),  # stored: the sniffed type's
        (None, "https://media.example/", "image/png", "attachment-2.png"),
        (None, "https://media.example/", None, "attachment-2"),
        (None, "https://media.example/cat.jpg?token=1", "image/jpeg", "cat.jpg"),
        ("photo.jpeg", TWILIO_MEDIA, "image/jpeg", "photo.jpeg"),  # one of the type's extensions: kept
        ("song.MP3", TWILIO_MEDIA, "audio/mpeg", "song.MP3"),
        ("photo.png", TWILIO_MEDIA, "image/jpeg", "photo.jpg"),  # another type's: replaced
        ("page.html", TWILIO_MEDIA, "text/plain", "page.txt"),
        ("run.bat", TWILIO_MEDIA, "text/plain", "run.txt"),
        ("report.2024", TWILIO_MEDIA, "application/pdf", "report.2024.pdf"),  # not an extension: appended
        ("../../etc/passwd", TWILIO_MEDIA, None, "passwd"),
        ("file..name...jpg", TWILIO_MEDIA, "image/jpeg", "file.name.jpg"),
        ("CON.jpg", TWILIO_MEDIA, "image/jpeg", "CON_.jpg"),
        ("a:b*c?.jpg", TWILIO_MEDIA, "image/jpeg", "a_b_c_.jpg"),
        (".hidden", TWILIO_MEDIA, None, "hidden"),
        ("..", TWILIO_MEDIA, "image/gif", "ME0a0b.gif"),  # nothing usable: the URL's name
    ],
)
def test_names(name, url, content_type, expected):
    assert attachment_file_name(name=name, url=url, index=2, content_type=content_type) == expected


def test_a_long_name_keeps_its_extension_within_the_bound():
    made = attachment_file_name(name="\u00e9" * 300 + ".jpg", url=None, index=0, content_type="image/jpeg")
    assert made.endswith(".jpg") and len(made.encode()) <= MAX_NAME_BYTES
