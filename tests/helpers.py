"""What tests in several folders share: the repository root, Snakemake runs, a <vid>-steering logits processor."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """A module of the repository that is not in the package (scripts/, bench/), by its path from the root."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The repo's Snakefile run by this Python's Snakemake in `workdir`."""
    snakefile = str(REPO / "Snakefile")
    return [sys.executable, "-m", "snakemake", "--snakefile", snakefile, "--directory", str(workdir), *args]


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(workdir, *args), capture_output=True, text=True, timeout=timeout)


def force_vid(vid: int, stop: int, at=(1, 3), end: int = 5):
    """A per-sample processor: emit <vid> at steps `at` and stop at step `end` (steers a random model)."""

    def processor(histories, scores):
        scores = scores.clone()
        for b, history in enumerate(histories):
            if len(history) in at:
                scores[b, vid] += 1e4
            elif len(history) == end:
                scores[b, stop] += 1e4
        return scores

    return processor
