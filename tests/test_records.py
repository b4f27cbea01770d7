"""One reader for files of records: JSON lists and JSON Lines, streamed, with errors that say where."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

import etchat.data.records as records_module
from etchat.data.records import iter_records, read_lines, read_records
from etchat.errors import DataError
from etchat.io import json_list_writer


def _random_records(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    alphabet = [*'abc xyz\n\t"\\/', "é", "東", "🚀", "\u2028", "<vid>"]

    def value(depth: int):
        kind = rng.randrange(6 if depth < 3 else 4)
        if kind == 0:
            return rng.randint(-(10**20), 10**20)
        if kind == 1:
            return rng.uniform(-1e6, 1e6)
        if kind == 2:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        if kind == 3:
            return rng.choice([True, False, None])
        if kind == 4:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {f"k{i}": value(depth + 1) for i in range(rng.randint(0, 4))}

    return [{f"f{i}": value(0) for i in range(rng.randint(1, 6))} for _ in range(count)]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 22])
def test_lists_and_json_lines_read_as_json_does(tmp_path, monkeypatch, chunk):
    """Any chunk size (records cut anywhere, in strings, numbers and multi-byte characters) gives json.load's
    records, from a list with any spacing and from JSON Lines."""
    monkeypatch.setattr(records_module, "CHUNK", chunk)
    records = _random_records(chunk, 300 if chunk > 1 else 40)
    (tmp_path / "a.json").write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps(records, separators=(",", ":")), encoding="utf-8")
    (tmp_path / "c.jsonl").write_text("\n\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    for name in ("a.json", "b.json", "c.jsonl"):
        assert read_records(tmp_path / name) == records, name


def test_a_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / "a.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"a": 1}]).encode())
    (tmp_path / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}\n')
    assert read_records(tmp_path / "a.json") == read_records(tmp_path / "b.jsonl") == [{"a": 1}]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"no records \(the file is empty\)"),
        (b" \n ", r"no records \(the file is empty\)"),
        (b"[ ]", "the list holds no records"),
        (b'[{"a": 1},\n {"a": 2},]', r"line 2, column 11 \(record 1\): a comma before '\]'"),
        (b'[{"a": 1},\n {"a" 2}]', r"line 2, column 7 \(record 1\): Expecting ':' delimiter"),
        (b'[{"a": 1}] {"b": 2}', r"line 1, column 12: more data after the list's closing '\]'"),
        (b'[{"a": 1} {"b": 2}]', r"line 1, column 11 \(record 0\): expected ',' or '\]' after record 0"),
        (b'[{"a": "x', r"line 1, column 8 \(record 0\): Unterminated string"),
        (b'{"a": 1}\n{"a": 1} {"b": 2}\n', r"line 2, column 10 \(record 1\): Extra data \(JSON Lines"),
        (b'{\n  "a": 1\n}\n', "one JSON object, not a set of records"),
        (b'[{"a": 1},\n {"b": {"c": 1, "c": 2}}]', r"record 1 \(from line 2\) has the key 'c' more than once"),
        (b'{"a": 1}\n\n{"a": 1, "a": 1}\n', r"record 1 \(from line 3\) has the key 'a' more than once"),
        (b'[{"a": "ok"},\n {"a": "caf\xe9"}]', r"not UTF-8 text: byte 0xe9 at byte offset 25 \(line 2\)"),
    ],
)
def test_bad_files_are_errors_that_say_where(tmp_path, monkeypatch, content, message):
    for chunk in (3, 1 << 22):  # the same message whether or not the problem straddles a chunk
        monkeypatch.setattr(records_module, "CHUNK", chunk)
        path = tmp_path / "bad.json"
        path.write_bytes(content)
        with pytest.raises(DataError, match=rf"^{tmp_path}/bad.json: .*{message}"):
            read_records(path)


def test_a_missing_file_and_a_directory_are_named(tmp_path):
    with pytest.raises(DataError, match="missing.json: file not found"):
        read_records(tmp_path / "missing.json")
    with pytest.raises(DataError, match="a directory, not a file of records"):
        read_records(tmp_path)


def test_streaming_holds_one_record_not_the_file(tmp_path):
    """Reading a 24 MB file record by record peaks near one chunk of text; json.load holds all of it."""
    path = tmp_path / "big.json"
    with json_list_writer(path) as add:
        for i in range(40_000):
            add({"id": i, "conversations": [{"from": "human", "value": "word " * 100}] * 1})
    assert json.loads(path.read_text())[-1]["id"] == 39_999  # what json_list_writer wrote is one JSON list

    def peak(read) -> int:
        tracemalloc.start()
        read()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    streamed = peak(lambda: sum(1 for _ in iter_records(path)))
    loaded = peak(lambda: json.load(open(path, encoding="utf-8")))
    assert streamed < 3 * records_module.CHUNK * 4 and streamed * 3 < loaded, (streamed, loaded)


def test_the_key_check_can_be_left_to_the_writer(tmp_path):
    """check_keys=False (files this package wrote from parsed records) reads as json does: the last value wins."""
    path = tmp_path / "a.json"
    path.write_text('[{"a": 1, "a": 2}]')
    assert read_records(path, check_keys=False) == json.loads(path.read_text()) == [{"a": 2}]
    with pytest.raises(DataError, match="has the key 'a' more than once"):
        read_records(path)


def test_text_lines_give_the_same_errors(tmp_path):
    """Charades-STA's text lists (validation and inference read them alike): non-blank lines, errors that say where."""
    path = tmp_path / "charades.txt"
    path.write_bytes(b"AB12C 1 5##opens a door.\n\nAB12C 7 9##caf\xe9\n")
    with pytest.raises(DataError, match=r"charades.txt: not UTF-8 text: byte 0xe9 at byte offset 40 \(line 3\)"):
        read_lines(path)
    path.write_text("AB12C 1 5##opens a door.\n\n  \nAB12C 7 9##sits.\n")
    assert read_lines(path) == ["AB12C 1 5##opens a door.", "AB12C 7 9##sits."]
    path.write_text("\n \n")
    with pytest.raises(DataError, match="no records"):
        read_lines(path)
