"""Files of records (annotations, custom videos, predictions): one reader for a JSON list and for JSON Lines.

`iter_records` streams: the file is decoded and parsed a few MiB at a time, one record in memory at once, so a
620 MB annotation file validates in bounded memory. The form is recognised from the content: `[` first means a
JSON list, anything else JSON Lines (one record per line, blank lines allowed). Every problem is a `DataError`
naming the file and where in it:
- bytes that are not UTF-8: their byte offset and line (a byte-order mark at the start is accepted);
- JSON syntax: line, column and the record it is in;
- a key twice in one object: the key and the record (a plain JSON reader keeps the last value without a word);
- no records at all (an empty file or `[]`): an error, never a valid empty set.
"""

from __future__ import annotations

import codecs
import gc
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from etchat.errors import DataError

CHUNK = 1 << 22  # characters decoded per read
_WHITESPACE = re.compile(r"[ \t\n\r]*")
FIX = "every record is a JSON object, in a list `[{...}, ...]` or one per line (JSON Lines)"


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
_PLAIN_DECODER = json.JSONDecoder()


def _not_utf8(path: Path, byte: int, offset: int, line: int) -> DataError:
    return DataError(f"{path}: not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} (line {line}); save the file as UTF-8")


class _Reader:
    """The text of a file in a sliding buffer: `buf[pos:]` is unread; `lines_before` counts the newlines of the text
    dropped before `buf`, `column_before` the characters of its last line (for the positions in messages)."""

    def __init__(self, path: Path, f: BinaryIO, check_keys: bool = True) -> None:
        self.path, self.f = path, f
        self.decoder = _DECODER if check_keys else _PLAIN_DECODER
        self.utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self.bytes_read = 0
        self.buf, self.pos, self.lines_before, self.column_before = "", 0, 0, 0
        self.eof = False
        self.read_more(CHUNK)
        if self.buf.startswith("\ufeff"):
            self.pos = 1

    def read_more(self, size: int) -> bool:
        """Append up to `size` more bytes' text to the buffer (the read part is dropped); False at the end."""
        if self.eof:
            return False
        self.lines_before += self.buf.count("\n", 0, self.pos)
        newline = self.buf.rfind("\n", 0, self.pos)
        self.column_before = self.pos - newline - 1 if newline >= 0 else self.column_before + self.pos
        pending = len(self.utf8.getstate()[0])
        data = self.f.read(size)
        self.eof = not data
        try:
            text = self.utf8.decode(data, final=self.eof)
        except UnicodeDecodeError as err:
            offset = self.bytes_read - pending + err.start
            bad = (err.object[err.start : err.start + 1] or b"?")[0]
            line = self.lines_before + self.buf.count("\n", self.pos) + err.object[: err.start].count(b"\n") + 1
            raise _not_utf8(self.path, bad, offset, line) from None
        self.bytes_read += len(data)
        self.buf, self.pos = self.buf[self.pos :] + text, 0
        return True

    def peek(self) -> str:
        """The next character that is not JSON whitespace (consumed up to it), or "" at the end of the file."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.read_more(CHUNK):
                return ""

    def line_at(self, pos: int) -> tuple[int, int]:
        """(line, column), both from 1, of buffer position `pos`."""
        newline = self.buf.rfind("\n", 0, pos)
        column = pos - newline if newline >= 0 else self.column_before + pos + 1
        return self.lines_before + self.buf.count("\n", 0, pos) + 1, column

    def syntax_error(self, pos: int, what: str, index: int | None) -> DataError:
        line, column = self.line_at(pos)
        where = f" (record {index})" if index is not None else ""
        return DataError(f"{self.path}: not valid JSON at line {line}, column {column}{where}: {what}; {FIX}")

    def duplicate(self, err: _DuplicateKey, index: int, start: int) -> DataError:
        line, _ = self.line_at(start)
        return DataError(
            f"{self.path}: record {index} (from line {line}) has the key {err.key!r} more than once in one object; "
            "a JSON reader would keep only its last value: remove or rename the others"
        )

    def value(self, index: int) -> Any:
        """The JSON value at the cursor, reading on while the buffer ends inside it."""
        size = CHUNK
        while True:
            start = self.pos
            try:
                value, end = self.decoder.raw_decode(self.buf, start)
            except json.JSONDecodeError as err:
                # Cut off by the buffer's end (an unterminated string reports where it starts), or a real error.
                cut = err.pos >= len(self.buf) - 8 or err.msg.startswith("Unterminated string")
                if not cut or self.eof:
                    raise self.syntax_error(err.pos, err.msg, index) from None
            except _DuplicateKey as err:
                raise self.duplicate(err, index, start) from None
            else:
                if end < len(self.buf) or self.eof:  # a number could go on in the next chunk
                    self.pos = end
                    return value
            self.read_more(size)
            size *= 2  # a record larger than a chunk: read on in growing steps, not quadratically

    def json_list(self) -> Iterator[Any]:
        self.pos += 1  # "["
        index = 0
        if self.peek() == "]":
            self.pos += 1
        else:
            while True:
                yield self.value(index)
                index += 1
                c = self.peek()
                self.pos += 1
                if c == "]":
                    break
                if c != ",":
                    raise self.syntax_error(self.pos - 1, f"expected ',' or ']' after record {index - 1}", index - 1)
                if self.peek() == "]":
                    raise self.syntax_error(self.pos, "a comma before ']' (trailing comma)", index - 1)
        if self.peek():
            raise self.syntax_error(self.pos, "more data after the list's closing ']'", None)
        if not index:
            raise DataError(f"{self.path}: the list holds no records; {FIX}")

    def _one_object(self) -> bool:
        """Whether the whole file is one JSON object spread over lines (a dict where records were expected)."""
        self.f.seek(0)
        try:
            return isinstance(json.loads(self.f.read().decode("utf-8-sig")), dict)
        except ValueError:
            return False

    def json_lines(self) -> Iterator[Any]:
        index = 0
        while True:
            newline = self.buf.find("\n", self.pos)
            while newline < 0 and self.read_more(CHUNK):
                newline = self.buf.find("\n", self.pos)
            if newline < 0 and self.pos >= len(self.buf):
                break
            end = newline if newline >= 0 else len(self.buf)
            line = self.buf[self.pos : end]
            if line.strip():
                try:
                    yield self.decoder.decode(line)
                except json.JSONDecodeError as err:
                    if not index and self._one_object():
                        raise DataError(f"{self.path}: one JSON object, not a set of records; {FIX}") from None
                    raise self.syntax_error(self.pos + err.pos, f"{err.msg} (JSON Lines: one record per line)", index)
                except _DuplicateKey as err:
                    raise self.duplicate(err, index, self.pos) from None
                index += 1
            self.pos = end + 1
        if not index:
            raise DataError(f"{self.path}: no records (the file is empty); {FIX}")


def iter_records(path: str | os.PathLike, check_keys: bool = True) -> Iterator[Any]:
    """The records of a JSON list or JSON Lines file, one at a time (see the module doc for the errors).

    `check_keys=False` skips the duplicate-key check (a Python call per object: a fifth of the reading time), for
    files this package wrote from parsed records, which cannot repeat a key (`etchat validate`'s checked copy)."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a directory, not a file of records") from None
    with f:
        reader = _Reader(path, f, check_keys)
        first = reader.peek()
        if not first:
            raise DataError(f"{path}: no records (the file is empty); {FIX}")
        yield from reader.json_list() if first == "[" else reader.json_lines()


def read_records(path: str | os.PathLike, check_keys: bool = True) -> list[Any]:
    """All records of a JSON list or JSON Lines file (`check_keys` as for `iter_records`).

    The cyclic garbage collector is paused meanwhile: records hold no cycles, and its passes over a growing list of
    millions of objects would double the reading time."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return list(iter_records(path, check_keys))
    finally:
        if paused:
            gc.enable()


def read_lines(path: str | os.PathLike) -> list[str]:
    """The non-blank lines of a text file of records (Charades-STA's `<video> <start> <end>##<query>`), with the
    same errors for a missing, non-UTF-8 or empty file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, data[err.start], err.start, data[: err.start].count(b"\n") + 1) from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: no records (the file is empty)")
    return lines
