"""The training working directory: resumable checkpoints kept outside Snakemake's declared outputs.

Layout of `results/train/stageN/work/`:
- `fingerprint.json`: what the checkpoints were trained from (settings, start model, data). A run whose
  fingerprint differs starts afresh: resuming stale checkpoints would mix two trainings.
- `checkpoints/checkpoint-<step>/`: HF Trainer + DeepSpeed checkpoints (model, ZeRO optimizer shards, scheduler,
  RNG states, trainer state). A checkpoint counts only once `COMPLETE` is written into it, after every rank has
  finished saving; a process killed in the middle of a save leaves a directory without it, which is deleted.
- `tensorboard/`, `metrics.live.tsv` and `skipped.train.rank<r>.tsv`: logs that survive a kill.

Snakemake deletes a failed job's declared outputs, so none of this is declared (snakemake.md §0.4).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from etchat.io import file_sha256, write_json_atomic

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def model_dir_digest(path: str | Path) -> str:
    """A cheap identity of a checkpoint directory: config, tokenizer and index files by content, weights by size
    and modification time (re-training a stage rewrites them)."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if f.suffix in (".json", ".txt", ".model"):
            h.update(f"{rel}:{file_sha256(f)}\n".encode())
        else:
            st = f.stat()
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def fingerprint(settings: dict[str, Any], inputs: Iterable[str | Path | None]) -> str:
    """Digest of the settings and of the input files/directories that define one stage's training."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for item in inputs:
        if item is None:
            h.update(b"none\n")
            continue
        p = Path(item)
        digest = model_dir_digest(p) if p.is_dir() else file_sha256(p) if p.is_file() else "missing"
        h.update(f"{p.name}:{digest}\n".encode())
    return h.hexdigest()


class WorkDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.tensorboard = self.root / "tensorboard"
        self.live_metrics = self.root / "metrics.live.tsv"

    def skipped_file(self, rank: int) -> Path:
        return self.root / f"skipped.train.rank{rank}.tsv"

    def runtime_skip_files(self) -> list[Path]:
        return sorted(self.root.glob("skipped.train.rank*.tsv"))

    # ------------------------------------------------------------------ fingerprint
    def claim(self, digest: str, details: dict[str, Any]) -> bool:
        """Make the directory belong to `digest`; returns True when it already did (resume possible).

        Called on rank 0 only, before any other rank looks at the checkpoints.
        """
        marker = self.root / "fingerprint.json"
        if marker.is_file():
            try:
                old = json.loads(marker.read_text()).get("digest")
            except json.JSONDecodeError:
                old = None
            if old == digest:
                return True
            log.warning(
                "%s: checkpoints come from other settings or inputs; deleting them and starting afresh", self.root
            )
        elif self.root.exists() and any(self.root.iterdir()):
            log.warning("%s: no fingerprint; deleting its content and starting afresh", self.root)
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(marker, {"digest": digest, **details})
        return False

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_dirs(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
        return sorted(found)

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        return [(step, p) for step, p in self._checkpoint_dirs() if (p / COMPLETE).is_file()]

    def latest(self) -> Path | None:
        complete = self.complete_checkpoints()
        return complete[-1][1] if complete else None

    def remove_incomplete(self) -> list[Path]:
        """Delete checkpoint directories a kill left half-written (rank 0, before training)."""
        removed = []
        for _, p in self._checkpoint_dirs():
            if not (p / COMPLETE).is_file():
                log.warning("removing incomplete checkpoint %s (the process stopped while saving it)", p)
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        return removed

    def mark_complete(self, step: int, keep: int | None) -> Path:
        """Mark checkpoint-<step> complete, then delete older ones beyond the `keep` newest complete ones."""
        path = self.checkpoints / f"checkpoint-{step}"
        write_json_atomic(path / COMPLETE, {"step": step})
        if keep is not None and keep > 0:
            complete = self.complete_checkpoints()
            for _, old in complete[: max(0, len(complete) - keep)]:
                shutil.rmtree(old, ignore_errors=True)
        return path
