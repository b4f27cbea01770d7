"""Listing the videos of a set and splitting the list into shards.

`etchat list-videos` writes one list per shard; each compression shard job then works through its
list. Shards are balanced by bytes (largest files first, each to the lightest shard), deterministic
for a given listing.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from etchat.errors import DataError
from etchat.io import resolve_inside, write_text_atomic

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}
)


@dataclass(frozen=True)
class VideoEntry:
    path: str  # relative to the set's root, with forward slashes
    size: int


def list_videos(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[VideoEntry]:
    """Every entry under `root` named like a video (by extension), sorted by path.

    Hidden files and folders (our own temporary files among them) are skipped, and so is `exclude`
    (a set whose compressed tree lies inside its input tree). Symbolic links are followed only when they
    stay inside `root`. Entries that cannot be videos are listed too, so that the compression step gives
    each a manifest row with its reason instead of a log line nobody reads: a link leaving `root`, a
    dangling link, a folder named like a video (its contents are listed as well), an unreadable file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"video folder {root} does not exist; put the set's videos there or fix video_sets in config")
    skip = Path(exclude).resolve() if exclude else None
    entries: list[VideoEntry] = []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as it:
            for item in it:
                if item.name.startswith("."):
                    continue
                rel = prefix + item.name
                named_like_video = Path(item.name).suffix.lower() in VIDEO_EXTENSIONS
                if item.is_symlink():
                    try:
                        resolve_inside(root, rel)
                    except DataError:
                        if named_like_video:  # its row says where it leads; nothing behind it is read
                            entries.append(VideoEntry(rel, 0))
                        else:
                            log.warning("skipping %s: it links outside %s", item.path, root)
                        continue
                if item.is_dir():
                    if named_like_video:
                        entries.append(VideoEntry(rel, 0))
                    if skip is None or Path(item.path).resolve() != skip:
                        pending.append((Path(item.path), rel + "/"))
                elif named_like_video:
                    try:
                        size = item.stat().st_size
                    except OSError:  # a dangling link
                        size = 0
                    entries.append(VideoEntry(rel, size))
    entries.sort(key=lambda e: e.path)
    return entries


def listing_fingerprint(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> str:
    """A digest of the names of the videos under `root` ("absent" when it does not exist), leaving out the
    `exclude` folder as `list_videos` does (a compressed tree inside the input tree must not change it).

    Names only, no stat calls, so it stays cheap on network file systems with 10^5 files.
    """
    root = Path(root)
    if not root.is_dir():
        return "absent"
    skip = Path(exclude).resolve() if exclude else None
    digest = hashlib.sha1()
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and (skip is None or Path(dirpath, d).resolve() != skip)
        ]
        rel = os.path.relpath(dirpath, root)
        names += [
            os.path.join(rel, f)
            for f in filenames + dirnames  # a folder named like a video is listed too
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS
        ]
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
    return f"{len(names)}:{digest.hexdigest()[:16]}"


def split_shards(entries: list[VideoEntry], n_shards: int) -> list[list[VideoEntry]]:
    """Balance entries over `n_shards` by bytes (then by count); each shard's list sorted by path."""
    shards: list[list[VideoEntry]] = [[] for _ in range(n_shards)]
    # A heap of (bytes, videos, shard): the lightest shard takes the next largest file.
    heap = [(0, 0, k) for k in range(n_shards)]
    for entry in sorted(entries, key=lambda e: (-e.size, e.path)):
        load, count, k = heapq.heappop(heap)
        shards[k].append(entry)
        heapq.heappush(heap, (load + entry.size, count + 1, k))
    return [sorted(s, key=lambda e: e.path) for s in shards]


def read_list(path: str | os.PathLike) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="the set's video folder")
    parser.add_argument("--exclude", help="a folder inside --root to leave out (e.g. the compressed tree)")
    parser.add_argument("--out", nargs="+", required=True, help="one list file per shard")


def run(args: argparse.Namespace) -> int:
    entries = list_videos(args.root, args.exclude)
    shards = split_shards(entries, len(args.out))
    for path, shard in zip(args.out, shards, strict=True):
        write_text_atomic(path, "".join(e.path + "\n" for e in shard))
    log.info(
        "%s: %d videos (%.1f MB) in %d shards", args.root, len(entries), sum(e.size for e in entries) / 1e6, len(shards)
    )
    return 0
