"""Small I/O helpers: stale temporaries, atomic folders, atomic TSV writing, file digests."""

from __future__ import annotations

import hashlib

import pytest

from etchat.io import atomic_dir, atomic_path, file_sha256, remove_stale_temporaries, write_tsv_atomic


def test_stale_temporaries_of_a_bracketed_name_and_only_those_are_removed(tmp_path):
    target = tmp_path / "v [12].mp4"
    own = [tmp_path / ".v [12].mp4.abc123.mp4", tmp_path / ".v [12].mp4.zz_9.tmp"]
    # Unescaped, `[12]` is a character class: `.v 1.mp4.*` (another video's in-progress temporary) matched.
    others = [
        tmp_path / ".v 1.mp4.abc123.mp4",
        tmp_path / ".v 2.mp4.x.mp4",
        tmp_path / "v [12].mp4",
        tmp_path / ".v [1].mp4.a.mp4",
    ]
    for path in own + others:
        path.write_bytes(b"x")
    remove_stale_temporaries(target)
    assert not any(p.exists() for p in own)
    assert all(p.exists() for p in others)


def test_stale_temporaries_match_what_atomic_path_leaves(tmp_path):
    target = tmp_path / "v [1].mp4"
    try:
        with atomic_path(target) as tmp:
            raise RuntimeError
    except RuntimeError:
        pass
    tmp.write_bytes(b"half")  # what a killed run leaves behind (the block had no chance to clean up)
    remove_stale_temporaries(target)
    assert not tmp.exists()
    remove_stale_temporaries(tmp_path / "missing" / "v.mp4")  # no folder: nothing to do


def test_write_tsv_atomic_quotes_only_where_needed(tmp_path):
    path = tmp_path / "sub" / "t.tsv"
    write_tsv_atomic(path, ["a", "b"], [[1, 'say "hi"'], ["x\ty", None], [2.5, "two\nlines\r"]])
    assert path.read_bytes() == b'a\tb\n1\t"say ""hi"""\n"x\ty"\t\n2.5\t"two\nlines\r"\n'
    assert [p.name for p in path.parent.iterdir()] == ["t.tsv"]


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(path, chunk=7) == hashlib.sha256(data).hexdigest()


def test_atomic_dir_replaces_the_folder_whole_or_not_at_all(tmp_path):
    out = tmp_path / "models/stage3"
    with atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["config.json"]

    (tmp_path / "models/.stage3.killed").mkdir()  # left by a process killed while saving
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.safetensors").write_text("x")
        raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["config.json"]  # the old folder is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["stage3"]  # no temporaries left

    with atomic_dir(out) as tmp:
        (tmp / "model.safetensors").write_text("y")
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]  # replaced, not merged
