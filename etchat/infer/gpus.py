"""One GPU per shard job on a machine with several: a job claims the first GPU no other job holds.

Snakemake gives local jobs no GPU ids (`--resources gpu=N` only limits how many run at once), so without this every
shard would use cuda:0. A job holds an exclusive `flock` on `<lock dir>/gpu<i>.lock` for its lifetime; the lock goes
away with the process, also when it is killed. Under SLURM (one visible GPU) this does nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

import torch

log = logging.getLogger(__name__)

_held: list[IO] = []  # open lock files, kept for the life of the process


def claim_gpu(lock_dir: str | os.PathLike | None = None) -> int | None:
    """Claim a free GPU and make it the current device; None when there are fewer than two GPUs."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return None
    folder = Path(lock_dir or os.environ.get("ETCHAT_GPU_LOCK_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "_")
    for index in range(count):
        handle = open(folder / f"etchat-gpu{index}-of-{visible}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held.append(handle)
        torch.cuda.set_device(index)
        log.info("using GPU %d of %d (lock %s)", index, count, handle.name)
        return index
    log.warning("all %d GPUs are held by other shard jobs; sharing cuda:0", count)
    return None
