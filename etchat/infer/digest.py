"""The digest of a checkpoint directory: sha256 over its weight, config and tokenizer files.

Hashing ~10 GB of weights takes seconds to a minute, so file hashes are cached by (path, size, mtime) in a small
JSON file; a rewritten file (new mtime or size) is hashed again. Training logs and optimizer states in the directory
(trainer_state.json, training_args.bin, checkpoint-*/) do not change the model, so they are left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from fnmatch import fnmatch
from pathlib import Path

from etchat.errors import DataError
from etchat.io import file_sha256, write_json_atomic

log = logging.getLogger(__name__)

MODEL_FILES = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab*",
    "merges.txt",
    "*.model",
    "chat_template*",
)


def model_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and any(fnmatch(p.name, pat) for pat in MODEL_FILES))


def checkpoint_digest(path: str | os.PathLike, cache_file: str | os.PathLike | None = None) -> str:
    """A 16-hex digest of the model files of a checkpoint directory (names and contents)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: not a checkpoint directory (no config.json)")
    cache: dict[str, dict] = {}
    if cache_file is not None and Path(cache_file).is_file():
        try:
            cache = json.loads(Path(cache_file).read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    entries, changed = [], False
    for file in model_files(path):
        st = file.stat()
        key = str(file.resolve())
        hit = cache.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            sha = hit["sha256"]
        else:
            sha = file_sha256(file)
            cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
            changed = True
        entries.append([file.name, st.st_size, sha])
    if cache_file is not None and changed:
        write_json_atomic(cache_file, cache)
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]
    log.info("checkpoint %s: digest %s (%d files)", path, digest, len(entries))
    return digest
