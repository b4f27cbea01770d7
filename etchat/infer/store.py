"""The per-shard answer log: one JSON line per finished sample, appended, flushed and fsynced.

A shard killed midway leaves at most one partial last line; `AnswerLog.read` drops it (and truncates the file
there, so the next append starts on a clean line). A line is reused only when it was produced by the same run
fingerprint (checkpoint, prompt template, decoding, frames) for the same sample digest; anything else is stale.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etchat.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class LogState:
    """What a log holds for a run: the reusable answers, and counts of what is not reused."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> line (status ok)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> line (status error), retried
    stale: int = 0  # lines of another fingerprint or another sample digest
    foreign: int = 0  # lines for keys that are not samples of this shard


class AnswerLog:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: Any = None

    def read(self, repair: bool = True) -> list[dict[str, Any]]:
        """Every complete line; a partial last line (a killed writer) is dropped and, with `repair`, cut off."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines, good_end = [], 0
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                break  # no newline: the writer died mid-line
            raw = data[pos:end]
            pos = end + 1
            if not raw.strip():
                good_end = pos
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                if pos >= len(data):
                    break  # a damaged last line
                raise DataError(
                    f"{self.path}: line {len(lines) + 1} is not valid JSON; the file is damaged: delete it to "
                    f"recompute this shard"
                ) from None
            if not isinstance(line, dict):
                raise DataError(f"{self.path}: line {len(lines) + 1} is not a JSON object; delete the file")
            lines.append(line)
            good_end = pos
        if good_end < len(data):
            log.warning("%s: dropping %d bytes of a partial last line", self.path, len(data) - good_end)
            if repair:
                with open(self.path, "r+b") as f:
                    f.truncate(good_end)
                    f.flush()
                    os.fsync(f.fileno())
        return lines

    def state(self, fingerprint: str, digests: Mapping[str, str], repair: bool = True) -> LogState:
        """Sort the lines into reusable answers, errors to retry, stale and foreign lines (the last line wins)."""
        out = LogState()
        for line in self.read(repair=repair):
            key = line.get("key")
            if key not in digests:
                out.foreign += 1
                continue
            if line.get("fingerprint") != fingerprint or line.get("sample") != digests[key]:
                out.stale += 1
                continue
            if line.get("status") == "ok":
                out.answers[key] = line
                out.errors.pop(key, None)
            else:
                out.errors[key] = line
        return out

    def __enter__(self) -> AnswerLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.read(repair=True)
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, lines: Iterable[Mapping[str, Any]]) -> None:
        """Append lines and make them durable before returning (one fsync per call)."""
        if self._file is None:
            raise RuntimeError("AnswerLog.append outside `with`")
        for line in lines:
            self._file.write(json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def read_lines(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete lines of a log, without modifying it (for the merge)."""
    return AnswerLog(path).read(repair=False)
