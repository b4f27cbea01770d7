"""Small I/O helpers: atomic writes and paths that must stay inside a data root."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

from etchat.errors import DataError

# mkstemp creates files readable by their owner only; finished files get the usual umask permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the file's suffix (ffmpeg picks the container from it) and is unique, so
    concurrent writers never see each other's half-written files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `path` that replaces `path` (whole) when the block succeeds; removed otherwise.
    Folders a killed process left for `path` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(glob.escape(f".{path.name}.") + "*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete the temporary files a killed `atomic_path` block left for `path` (`.name.*` beside it)."""
    path = Path(path)
    if path.parent.is_dir():
        # Escaped: a name such as `v [1].mp4` is not a glob pattern.
        for stale in path.parent.glob(glob.escape(f".{path.name}.") + "*"):
            stale.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> None:
    """`newline` as for open(): "" writes `text` as it is, without translating line endings."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_tsv_atomic(path: str | os.PathLike, header: Iterable, rows: Iterable[Iterable]) -> None:
    """A tab-separated file with "\\n" line ends, fields quoted by csv only where needed."""
    buffer = StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue(), newline="")


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def json_list_writer(path: str | os.PathLike) -> Iterator[Callable[[Any], None]]:
    """Yield `add(item)`, which appends an item to a JSON list written atomically to `path` when the block succeeds
    (the bytes `write_json_atomic(path, items, indent=None)` writes, without holding the items in memory)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            separator = ""

            def add(item: Any) -> None:
                nonlocal separator
                f.write(separator + json.dumps(item, ensure_ascii=False))
                separator = ", "

            f.write("[")
            yield add
            f.write("]\n")
            f.flush()
            os.fsync(f.fileno())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}); fix or regenerate the file") from None


def resolve_inside(root: str | os.PathLike, relative: str) -> Path:
    """Join `relative` onto `root` and refuse results outside `root` (absolute paths, `..`, symlinks)."""
    root_path = Path(root).resolve()
    candidate = (root_path / relative).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise DataError(f"path {relative!r} leaves its data root {root_path}; use a path relative to that root")
    return candidate


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
