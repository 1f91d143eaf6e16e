"""Hypothesis strategies for what a hostile or broken caller sends: text no database holds (NUL, lone
surrogates), bytes that are not UTF-8, digits int() refuses, numbers too large for a float or a column,
times at and past the ends of the years a datetime holds, deep nesting, XML declarations and documents
expat refuses, form encodings of all of them, and documents shaped like a real one with any part of it
replaced. Used by the fuzz tests of the webhooks, the read API and the upload API.

Generation is derandomized (the same examples on every run) and bounded: see FUZZ_SETTINGS."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import quote_from_bytes
from xml.sax.saxutils import escape, quoteattr

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Every fuzz test: the same examples each run (derandomize), no example database written into the
# worktree, no deadline (a request's time depends on the machine's load, not on the input), and the
# app fixture shared by every example of a test (it is rebuilt per test, which is what it is for).
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text ------------------------------------------------------------------------------------------------

# Characters that have broken parsers and databases: NUL, lone surrogates of both halves, the
# replacement character, bidi and BOM, digits of other scripts (isdigit() but not int()), separators of
# forms and XML, line breaks, and the non-characters at the ends of the planes.
HOSTILE_CHARACTERS = (
    "\ud800",
    "\x00",
    "\udbff",
    "\udc00",
    "\udc80",
    "\udfff",
    "\ufffd",
    "\ufeff",
    "\u202e",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\u00b2",  # SUPERSCRIPT TWO
    "\uff11",  # FULLWIDTH DIGIT ONE
    "\r",
    "\n",
    "\t",
    "\x1b",
    "\x7f",
    "&",
    "=",
    "+",
    "%",
    "<",
    ">",
    '"',
    "'",
    "\\",
    ";",
    ",",
    ":",
    "#",
    "?",
    "/",
    "[",
    "]",
    ".",
    " ",
)
characters = st.one_of(
    st.sampled_from(HOSTILE_CHARACTERS),
    st.characters(),  # any code point but a surrogate
    st.characters(categories=["Cs"]),  # the lone surrogates hypothesis leaves out by default
)

# Times as text: the ends of the years a datetime holds, with offsets that push them past those ends,
# impossible dates, unix seconds and milliseconds too large for a datetime or a float.
_YEARS = ("0001", "0002", "1969", "1970", "2026", "9998", "9999", "0000", "10000")
_DATES = ("01-01", "12-31", "02-29", "02-30", "13-01", "00-00")
_CLOCKS = ("00:00:00", "23:59:59", "23:59:59.999999", "24:00:00", "12:00:00.123456789", "00:00")
_OFFSETS = ("+05:00", "-05:00", "", "Z", "z", "+00:00", "+14:00", "-12:00", "+23:59", "-23:59", "+24:00", "+0530")
_UNIX = (
    "0",
    "-1",
    "1767225600",
    "1767225600000",
    "253402300799",
    "253402300800",
    "253402300800000",
    "99999999999999999999",
    "1e308",
    "1e309",
    "NaN",
    "-inf",
    "1" * 400,
    "\u0661\u0662\u0663",
)
iso_times = st.builds(
    lambda year, date, separator, clock, offset: f"{year}-{date}{separator}{clock}{offset}",
    st.sampled_from(_YEARS),
    st.sampled_from(_DATES),
    st.sampled_from(("T", " ", "t")),
    st.sampled_from(_CLOCKS),
    st.sampled_from(_OFFSETS),
)
# At the ends of the years, on either side: the ones an offset pushes out are the most likely to break.
_EDGES = (
    "0001-01-01T00:00:00+05:00",
    "0001-01-01 00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59.999999-00:01",
    "9999-12-31T23:59:59Z",
)
times = st.one_of(st.sampled_from(_EDGES), iso_times, st.sampled_from(_UNIX))

# Numbers, as JSON may carry them: past 64 bits, past a float, not finite. (json.dumps writes NaN and
# Infinity, which Python's json.loads reads back.)
numbers = st.one_of(
    st.sampled_from((0, -1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**300, -(10**300))),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from((1e308, -1e308, 5e-324, 0.5, -0.0)),
)

# Text with a character no database holds, or with any hostile one, in the middle of ordinary text:
# the likeliest kinds, as the ones that got past every parser and broke the store.
UNSTORABLE = ("\ud800", "\udfff", "\udc80", "\x00")
_unstorable_text = st.builds("{}{}{}".format, st.text(max_size=4), st.sampled_from(UNSTORABLE), st.text(max_size=4))
_hostile_text = st.builds(
    "{}{}{}".format, st.text(max_size=4), st.sampled_from(HOSTILE_CHARACTERS), st.text(characters, max_size=4)
)
hostile_text = st.one_of(
    _unstorable_text,
    _hostile_text,
    times,
    _unstorable_text,
    st.text(characters, max_size=24),
    st.sampled_from(("", " ", "null", "true", "0", "x" * 70, "x" * 300, "x" * 5000, "+15551234567", "ACME")),
    st.builds(lambda char, count: char * count, st.sampled_from(HOSTILE_CHARACTERS), st.sampled_from((2, 65, 300))),
)
scalars = st.one_of(hostile_text, numbers, st.booleans(), st.none())

# Values: scalars, or lists and objects of them, now and then nested far deeper than any payload.
_shallow = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = "x") -> Any:
    """`leaf` inside `depth` levels of alternating objects and lists."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


_deep = st.builds(nested, st.sampled_from((64, 500, 990, 3000)))
# Deep ones one time in eight: most documents deeper than the JSON parser goes stop at the parser.
values = st.one_of(*[_shallow] * 7, _deep)


# Documents shaped like a real one --------------------------------------------------------------------


# Where a document holds a value: the keys and list indexes that lead to it from the root.
Path = tuple[Any, ...]
_TIME_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{10,13}")


@st.composite
def mutated(draw: st.DrawFn, template: Any, keys: tuple[str, ...] = ()) -> Any:
    """`template` with up to three of its parts (a value, a list or an object) replaced or dropped, and
    now and then a member added (named from `keys`, the vocabulary of the document, or anything). Few
    changes, so that many documents still pass the parser's checks and carry their hostile value on
    into the store: that is where the surrogate in a dedupe key was."""
    document = copy.deepcopy(template)
    for path in draw(st.lists(st.sampled_from(_paths(template)), max_size=3, unique=True)):
        action = draw(st.sampled_from(("alike", "alike", "alike", "text", "value", "drop")))
        if action == "drop":
            _drop(document, path)
        else:
            original = _at(template, path)
            replacement = _alike(original) if action == "alike" else hostile_text if action == "text" else values
            document = _replaced(document, path, draw(replacement))
    for name, value in draw(
        st.dictionaries(st.sampled_from(keys) if keys else hostile_text, values, max_size=1)
    ).items():
        if isinstance(document, dict):
            document[name] = value
    return document


def _alike(value: Any) -> st.SearchStrategy[Any]:
    """Hostile values of the kind `value` is: times for a time, numbers for a number, text for text."""
    if isinstance(value, str) and _TIME_LIKE.search(value):
        return times
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return numbers
    if isinstance(value, str):
        return hostile_text
    return values


def _paths(value: Any, path: Path = ()) -> list[Path]:
    found = [path] if path else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found.extend(_paths(item, (*path, key)))
    return found


def _at(document: Any, path: Path) -> Any:
    for step in path:
        document = document[step]
    return document


def _parent(document: Any, path: Path) -> Any:
    """The object or list holding `path`'s last step, or None when an earlier change removed it."""
    try:
        parent = _at(document, path[:-1])
        parent[path[-1]]
    except (KeyError, IndexError, TypeError):
        return None
    return parent if isinstance(parent, (dict, list)) else None


def _replaced(document: Any, path: Path, value: Any) -> Any:
    parent = _parent(document, path)
    if parent is not None:
        parent[path[-1]] = value
    return document


def _drop(document: Any, path: Path) -> None:
    parent = _parent(document, path)
    if isinstance(parent, dict):
        del parent[path[-1]]
    elif parent is not None:
        parent[path[-1]] = None  # a list keeps its length, so that later paths still point where they did


def vocabulary(template: Any) -> tuple[str, ...]:
    """Every member name in a template, at any depth."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            names.update(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(template)
    return tuple(sorted(names))


# Rendering a document as a body ------------------------------------------------------------------------


def text_bytes(value: Any) -> bytes:
    """A scalar as the bytes a sender would put in a form or an XML document; lone surrogates become the
    bytes of their UTF-8 form (ED A0 80), which no UTF-8 decoder accepts."""
    if not isinstance(value, str):
        return json_body(value)
    return value.encode("utf-8", "surrogatepass")


def json_body(document: Any) -> bytes:
    # ensure_ascii writes a lone surrogate as its \ud800 escape; allow_nan writes NaN and Infinity.
    try:
        return json.dumps(document).encode()
    except (RecursionError, ValueError):  # deeper than json.dumps goes, or an int past 4300 digits
        return b"[" * 100_000


def form_body(document: Any) -> bytes:
    """Top-level members as form fields, a list as the field repeated, anything nested as its JSON."""
    if not isinstance(document, dict):
        return quote_from_bytes(text_bytes(document)).encode()
    pairs = []
    for name, value in document.items():
        for item in value if isinstance(value, list) else [value]:
            encoded = json_body(item) if isinstance(item, (dict, list)) else text_bytes(item)
            pairs.append(quote_from_bytes(text_bytes(name)) + "=" + quote_from_bytes(encoded))
    return "&".join(pairs).encode()


# Declarations of encodings expat reads, cannot read, or that Python does not know.
XML_ENCODINGS = (None, "UTF-8", "utf-8", "ISO-8859-1", "US-ASCII", "UTF-16", "UTF-32", "bogus", "rot13", "idna", "")


def _xml_element(name: Any, value: Any, depth: int = 0) -> bytes:
    tag = name if isinstance(name, str) and name.isidentifier() and name.isascii() else "field"
    if isinstance(value, dict) and depth < 40:
        inner = b"".join(_xml_element(key, item, depth + 1) for key, item in value.items())
    elif isinstance(value, list) and depth < 40:
        return b"".join(_xml_element(tag, item, depth + 1) for item in value)
    elif value is None:
        return f"<{tag}/>".encode()
    elif isinstance(value, str):
        inner = escape(value).encode("utf-8", "surrogatepass")
    else:
        inner = escape(json_body(value).decode()).encode()
    return f"<{tag}>".encode() + inner + f"</{tag}>".encode()


@st.composite
def xml_body(draw: st.DrawFn, document: Any) -> bytes:
    """The document as XML under a root element, after an XML declaration (any encoding, known or not),
    now and then with a DTD, an entity or a character reference no XML document may hold."""
    encoding = draw(st.sampled_from(XML_ENCODINGS))
    declaration = b"" if encoding is None else f'<?xml version="1.0" encoding={quoteattr(encoding)}?>'.encode()
    prelude = draw(
        st.sampled_from(
            (
                b"",
                b"",
                b'<!DOCTYPE r [<!ENTITY e "x">]>',
                b'<!DOCTYPE r SYSTEM "http://127.0.0.1/x.dtd">',
                b"<?pi data?>",
                b"<!-- comment -->",
            )
        )
    )
    extra = draw(
        st.sampled_from(
            (
                b"",
                b"",
                b"<x>&#0;</x>",
                b"<x>&#xD800;</x>",
                b"<x>&e;</x>",
                b"<x a='1' a='2'/>",
                b"<x><![CDATA[<not>&markup;]]></x>",
                b'<x xmlns="urn:x" xmlns:y="urn:y" y:a="\xed\xa0\x80"/>',
            )
        )
    )
    root = draw(st.sampled_from(("r", "response", "ns:r")))
    children = b"".join(_xml_element(k, v) for k, v in document.items()) if isinstance(document, dict) else b""
    return declaration + prelude + f"<{root}>".encode() + children + extra + f"</{root}>".encode()


# Bytes spliced into a body: UTF-8 that no decoder accepts (surrogates, overlong forms, past U+10FFFF,
# truncated sequences, stray continuation bytes), NUL, a BOM, quotes and escapes that end or break strings.
BAD_BYTES = (
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xe2\x82",
    b"\x00",
    b"\xef\xbb\xbf",
    b'"',
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\u0000",
    b"%",
    b"%ED%A0%80",
    b"%00",
    b"%FF",
    b"&",
    b"=",
    b"<",
    b"]]>",
)


# Whole bodies that are extreme in themselves: empty, a BOM, JSON's odd top-level values, numbers past
# a float, more form fields than the parser takes, wide and deep documents, XML entity tricks.
SPECIAL_BODIES = (
    b"",
    b" ",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
    b"null",
    b"[]",
    b'"x"',
    b"1e999999",
    b"-0",
    b"NaN",
    b'{"a": 1, "a": 2}',
    b'{"__proto__": {"x": 1}}',
    b"a=1&" * 6000,
    b"a&b&&=&==&%&%G1&%E2%82",
    b"{" + b'"k": 1, ' * 20000 + b'"z": 0}',
    b"[" * 5000 + b"]" * 5000,
    b"<r>" + b"<a>1</a>" * 20000 + b"</r>",
    b"<r>" + b"<a>" * 2000 + b"</a>" * 2000 + b"</r>",
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>',
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    b"<r><![CDATA[\x00]]></r>",
    b"<r>&#x10FFFF;&#xFFFE;</r>",
    b'<r xmlns:a="urn:a" a:b="1"><a:c>1</a:c></r>',
    "<?xml version='1.0' encoding='UTF-16'?><r/>".encode("utf-16"),
)


@st.composite
def spliced(draw: st.DrawFn, body: bytes) -> bytes:
    """`body` as it is (most often); with bad bytes put in somewhere, or just after a quote (inside a
    JSON string or an XML attribute, where a parser has to decode them); cut short; any bytes; or a body
    extreme in itself."""
    action = draw(
        st.sampled_from(
            ("keep",) * 12 + ("splice", "splice", "in_string", "in_string", "truncate", "binary", "special")
        )
    )
    if action == "binary":
        return draw(st.binary(max_size=64))
    if action == "special":
        return draw(st.sampled_from(SPECIAL_BODIES))
    if action == "keep" or not body:
        return body
    quotes = [index + 1 for index, byte in enumerate(body) if byte == ord('"')]
    inside = action == "in_string" and quotes
    position = draw(st.sampled_from(quotes) if inside else st.integers(0, len(body)))
    if action == "truncate":
        return body[:position]
    return body[:position] + draw(st.sampled_from(BAD_BYTES)) + body[position:]


def percent_encoded(value: Any) -> str:
    return quote_from_bytes(text_bytes(value), safe="")


# Headers a test client can send: latin-1 text without line breaks.
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=24), st.sampled_from(("", "x" * 2000))
)
