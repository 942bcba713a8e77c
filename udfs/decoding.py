"""Text decoding: one rule for bad bytes — a named codec, strict decoding that names the bytes it could not
read, and no byte order mark left in a value."""
from __future__ import annotations

import codecs
import io
import re
from typing import BinaryIO, Iterator

from udfs.status import DECODE_ERROR, RowError

BOM = "\ufeff"
# A codecs error handler: each byte that cannot be decoded becomes the lone surrogate U+DC00 + byte. A
# decoder never yields a lone surrogate for valid input, so a marked line still splits and parses (CSV
# quotes, JSON) like the file meant, and each value can then be checked for marks on its own. Python's
# own `surrogateescape` does the same but refuses bytes below 0x80 (which UTF-16 can leave undecoded).
MARK = "sparkamp.mark"
_MARKED = re.compile("[\udc00-\udcff]+")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _mark(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(chr(0xDC00 + b) for b in error.object[error.start:error.end]), error.end


codecs.register_error(MARK, _mark)


def check_encoding(name: str) -> str:
    """`name` as Python's codec registry spells it (`UTF8` → `utf-8`); ValueError when Python has no text
    codec by that name (`base64` is a bytes codec, not text)."""
    try:
        canonical = codecs.lookup(name).name
        b"\xff\xfe".decode(name, "replace")  # a bytes codec refuses (bytes.decode skips empty input)
    except LookupError:
        raise ValueError(f"{name!r} is not a text encoding Python knows; e.g. utf-8, utf-16, cp1252, "
                         "latin-1 (any name in Python's `codecs` list)") from None
    return canonical


def display(encoding: str) -> str:
    """How messages name an encoding: `UTF-8`, `UTF-16`, `cp1252`."""
    canonical = check_encoding(encoding)
    return canonical.upper() if canonical.startswith("utf") else canonical


def decode(data: bytes, encoding: str) -> str:
    """`data` decoded strictly with `encoding`, a leading BOM dropped. RowError(decode_error) naming the
    first bytes that cannot be decoded, their offset, and a UTF-16 BOM when that is the likely cause."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start:exc.end]
        raise RowError(DECODE_ERROR, f"not valid {display(encoding)}: byte(s) {bad.hex(' ')} at offset "
                                     f"{exc.start} ({exc.reason}){utf16_hint(data, encoding)}") from None
    return text[1:] if text.startswith(BOM) else text


def utf16_hint(head: bytes, encoding: str) -> str:
    """A hint for bytes that start with a UTF-16 BOM read as something else; '' otherwise."""
    if head.startswith(_UTF16_BOMS) and not check_encoding(encoding).startswith(("utf-16", "utf-32")):
        return "; it starts with a UTF-16 byte order mark: set encoding to utf-16"
    return ""


def marked_lines(stream: BinaryIO, encoding: str) -> Iterator[str]:
    """The lines of a byte stream decoded with `encoding`, endings kept (`\\n`, `\\r\\n` or `\\r`, as
    `csv` wants them), a leading BOM dropped, undecodable bytes marked (see MARK)."""
    text = io.TextIOWrapper(stream, encoding=encoding, errors=MARK, newline="")
    first = True
    for line in text:
        if first:
            line, first = line[1:] if line.startswith(BOM) else line, False
        yield line


def has_marks(text: str) -> bool:
    """Whether `text` holds a marked (undecodable) byte."""
    return _MARKED.search(text) is not None


def undecodable(value: str, encoding: str) -> str | None:
    """None when `value` holds no marked byte; else what went wrong, naming the first bytes."""
    found = _MARKED.search(value)
    if found is None:
        return None
    bad = bytes(ord(ch) - 0xDC00 for ch in found.group())
    return (f"not valid {display(encoding)}: byte(s) {bad.hex(' ')} at character {found.start()} "
            f"of {unmark(value)[:80]!r}")


def unmark(value: str) -> str:
    """`value` with each run of marked bytes replaced by one U+FFFD (it is then valid Unicode)."""
    return _MARKED.sub("\ufffd", value)
