"""Annotation validation: every format, the reasons given, and the fail/drop behaviour of the command."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys

import pytest

from etchat.data.validate import validate_file


@pytest.fixture
def root(tmp_path):
    (tmp_path / "videos/src").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    (tmp_path / "videos/src/v.mp4").write_bytes(b"video")
    (tmp_path / "images/i.jpg").write_bytes(b"image")
    (tmp_path / "secret.mp4").write_bytes(b"outside the data root")
    return tmp_path


def _conv(*turns):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(turns)]


LLAMAVID = {"id": "1", "video": "src/v.mp4", "conversations": _conv("<image>\nDescribe.", "A red square.")}
ET_INSTRUCT = {
    "video": "src/v.mp4",
    "duration": 20.0,
    "task": "tvg",
    "source": "s",
    "src": [3.0],
    "tgt": [4.0, 9.5],
    "conversations": _conv("<image>\nAfter <vid> seconds, when?", "In <vid> - <vid> seconds."),
}
ETBENCH = {
    "version": 1.0,
    "idx": 0,
    "task": "rvq",
    "source": "s",
    "video": "src/v.mp4",
    "duration": 20.0,
    "src": [1.4, 5.2],
    "p": 4,
    "o": ["a", "b", "c", "d", "Unable to answer"],
    "q": "What happens in <vid> - <vid>?",
}


def _check(root, fmt, records, name="a.json", keep=None):
    path = root / name
    path.write_text(json.dumps(records))
    return validate_file(path, fmt, root / "videos", root / "images", keep)


def _reasons(result):
    return [p.reason for p in result.problems]


@pytest.mark.parametrize(
    "fmt, base, mutate, reason",
    [
        ("llamavid", LLAMAVID, lambda r: r.update(image="i.jpg"), "both 'image' and 'video'"),
        ("llamavid", LLAMAVID, lambda r: r.update(video="src/missing.mp4"), "not found under"),
        ("llamavid", LLAMAVID, lambda r: r.update(video="../secret.mp4"), "leaves its data root"),
        ("llamavid", LLAMAVID, lambda r: r.update(video=str(r["_root"] / "secret.mp4")), "leaves its data root"),
        ("llamavid", LLAMAVID, lambda r: r["conversations"].reverse(), "must alternate"),
        ("llamavid", LLAMAVID, lambda r: r["conversations"].pop(), "ends with a human turn"),
        ("llamavid", LLAMAVID, lambda r: r.pop("video"), "<image> in a text-only record"),
        ("llamavid", LLAMAVID, lambda r: r["conversations"][1].update(value="<image> x"), "answer (gpt turn)"),
        ("et_instruct", ET_INSTRUCT, lambda r: r.update(tgt=[4.0]), "2 <vid> in gpt turns but 1 values in tgt"),
        ("et_instruct", ET_INSTRUCT, lambda r: r.pop("src"), "1 <vid> in human turns but 0 values in src"),
        ("et_instruct", ET_INSTRUCT, lambda r: r.update(tgt=[4.0, 95.0]), "beyond the video's duration"),
        ("et_instruct", ET_INSTRUCT, lambda r: r.update(tgt=[-1.0, 2.0]), "negative time"),
        ("et_instruct", ET_INSTRUCT, lambda r: r.update(duration="long"), "duration must be a positive number"),
        (
            "et_instruct",
            ET_INSTRUCT,
            lambda r: r["conversations"][0].update(value="At <vid>?\n<image>"),
            "<vid> before <image>",
        ),
        ("etbench_vid", ETBENCH, lambda r: r.update(task="xyz"), "not an E.T. Bench task"),
        ("etbench_vid", ETBENCH, lambda r: r.update(p=5), "p must index o"),
        ("etbench_vid", ETBENCH, lambda r: r.update(o=["a", "b", "c", "d"]), "a list of 5 options"),
        ("etbench_vid", ETBENCH, lambda r: r.update(src=[1.4]), "q has 2 <vid> but src has 1 values"),
        ("etbench_vid", ETBENCH, lambda r: r.update(task="tvg", tgt=[5, 2], src=[], q="When?"), "not a valid span"),
        ("etbench_vid", ETBENCH, lambda r: r.update(task="dvc", tgt=[[1, 2]], g=["a", "b"]), "g has 2 captions"),
        ("etbench_vid", ETBENCH, lambda r: r.update(a=None), "answer a must be a string"),
        ("etbench_vid", ETBENCH, lambda r: r.update(src=[1.4, 22.0]), "src time 22.0 lies beyond the video's duration"),
        ("etbench_vid", ETBENCH, lambda r: r.update(task="tvg", tgt=[5, 30], src=[], q="When?"), "ends beyond"),
        ("etbench_vid", ETBENCH, lambda r: r.update(task="tal", tgt=[[1, 2], [3, 40]], src=[], q="?"), "tgt[1]"),
        (
            "etbench_vid",
            ETBENCH,
            lambda r: r.update(task="eca", o=[[1, 2]] * 3 + [[3, 40]], p=0),
            "o[3] [3, 40] ends beyond",
        ),
        (
            "etbench_vid",
            ETBENCH,
            lambda r: r.update(version=2.0),
            "duplicate of record 0: the same task, source and idx",
        ),
    ],
)
def test_bad_records_are_named_with_their_reason(root, fmt, base, mutate, reason):
    good = copy.deepcopy(base)
    assert not _check(root, fmt, [good]).problems
    bad = copy.deepcopy(base)
    bad["_root"] = root
    mutate(bad)
    bad.pop("_root")
    valid = []
    result = _check(root, fmt, [good, bad], keep=valid.append)
    assert [p.index for p in result.problems] and all(p.index == 1 for p in result.problems)
    assert any(reason in r for r in _reasons(result)), _reasons(result)
    assert valid == [good] and (result.records, result.valid) == (2, 1)


def test_txt_flavour_writes_timestamps_as_text(root):
    txt = {**ETBENCH, "q": "What happens in 1.4 - 5.2?"}
    assert not _check(root, "etbench_txt", [txt]).problems
    assert "must write timestamps as text" in _reasons(_check(root, "etbench_txt", [ETBENCH]))[0]


def test_vhd_accepts_both_ground_truth_shapes(root):
    base = {**ETBENCH, "task": "vhd", "src": [], "q": "Highlight?"}
    for p in ("p", "o"):
        base.pop(p)
    for tgt in ([[1, 2], [3, 4]], [[[1, 2]], [[1.5, 2.5], [3, 4]]]):
        assert not _check(root, "etbench_vid", [{**base, "tgt": tgt}]).problems
    assert _check(root, "etbench_vid", [{**base, "tgt": [[[1, 2]], "x"]}]).problems


def test_charades_lines(root):
    (root / "videos/AB12C.mp4").write_bytes(b"v")
    path = root / "charades.txt"
    path.write_text(
        "AB12C 1.0 5.5##a person opens a door.\nAB12C 7 3##reversed span.\nXX 1 2##missing.\nAB12C 1##bad\n"
    )
    result = validate_file(path, "charades_sta", root / "videos")
    assert [p.index for p in result.problems] == [2, 3]
    assert "XX.mp4 not found" in result.problems[0].reason and "expected" in result.problems[1].reason


def _validate_cli(root, path, fmt, on_invalid, *extra, video_root=True):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "etchat",
            "validate",
            str(path),
            "--format",
            fmt,
            *extra,
            *(["--video-root", str(root / "videos")] if video_root else []),
            "--on-invalid",
            on_invalid,
            "--out",
            str(root / "out/checked.json"),
            "--report",
            str(root / "out/r.json"),
            "--dropped",
            str(root / "out/dropped.tsv"),
        ],
        capture_output=True,
        text=True,
    )


def test_fail_mode_stops_and_lists_every_bad_record(root):
    bad = [{**LLAMAVID, "video": f"src/missing{i}.mp4"} for i in range(30)]
    path = root / "a.json"
    path.write_text(json.dumps([LLAMAVID, *bad]))
    proc = _validate_cli(root, path, "llamavid", "fail")
    assert proc.returncode == 2
    assert "30 of 31 records are invalid" in proc.stderr and "record 1 (1)" in proc.stderr
    assert "annotations.on_invalid: drop" in proc.stderr
    assert not (root / "out/checked.json").exists()
    for name in ("dropped.invalid.tsv", "dropped.tsv"):  # --dropped is honoured, and a copy Snakemake keeps
        with open(root / "out" / name) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert [int(r["index"]) for r in rows] == list(range(1, 31)) and rows[0]["file"] == str(path)
    for name in ("r.json", "r.invalid.json"):  # the report too
        report = json.loads((root / "out" / name).read_text())
        assert (report["records"], report["invalid"]) == (31, 30)


def test_drop_mode_keeps_valid_records_and_writes_the_dropped(root):
    path = root / "a.json"
    path.write_text(json.dumps([LLAMAVID, {**LLAMAVID, "video": "src/missing.mp4"}, LLAMAVID]))
    proc = _validate_cli(root, path, "llamavid", "drop")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((root / "out/checked.json").read_text()) == [LLAMAVID, LLAMAVID]
    assert json.loads((root / "out/r.json").read_text())["invalid"] == 1
    with open(root / "out/dropped.tsv") as f:
        assert [r["index"] for r in csv.DictReader(f, delimiter="\t")] == ["1"]


def test_malformed_json_names_the_file(root):
    path = root / "broken.json"
    path.write_text("[{")
    proc = _validate_cli(root, path, "llamavid", "fail")
    assert proc.returncode == 2 and "broken.json: not valid JSON" in proc.stderr


def test_json_lines_give_the_same_checked_copy_as_a_json_list(root):
    """The checked copy is streamed out as one JSON list, byte for byte what json.dumps writes, from either form."""
    records = [LLAMAVID, {**LLAMAVID, "video": "src/missing.mp4"}, {**LLAMAVID, "id": "2 é"}]
    (root / "a.json").write_text(json.dumps(records, indent=2))
    (root / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    copies = []
    for name in ("a.json", "a.jsonl"):
        proc = _validate_cli(root, root / name, "llamavid", "drop")
        assert proc.returncode == 0, proc.stderr
        copies.append((root / "out/checked.json").read_bytes())
    kept = [records[0], records[2]]
    assert copies[0] == copies[1] == (json.dumps(kept, ensure_ascii=False) + "\n").encode()


def test_a_duplicate_key_stops_validation_naming_it(root):
    path = root / "a.jsonl"
    path.write_text(json.dumps(LLAMAVID) + "\n" + json.dumps(LLAMAVID)[:-1] + ', "video": "src/v.mp4"}\n')
    proc = _validate_cli(root, path, "llamavid", "drop")
    assert proc.returncode == 2 and "record 1 (from line 2) has the key 'video' more than once" in proc.stderr
    assert not (root / "out/checked.json").exists()


def test_media_without_a_configured_root_says_to_set_the_root(root):
    path = root / "a.json"
    path.write_text(json.dumps([LLAMAVID]))
    proc = _validate_cli(root, path, "llamavid", "fail", video_root=False)
    assert proc.returncode == 2 and "no video_root is configured" in proc.stderr
    assert "Set video_root for this file" in proc.stderr and "on_invalid: drop" not in proc.stderr


def test_etbench_records_are_named_by_task_source_and_idx(root):
    result = _check(root, "etbench_vid", [{**ETBENCH, "p": 9}])
    assert result.problems[0].label == "rvq/s idx 0"


def test_oversized_text_is_kept_and_named_in_a_warning(root):
    path = root / "a.json"
    long = {**LLAMAVID, "id": "long", "conversations": _conv("<image>\nDescribe.", "word " * 3000)}
    path.write_text(json.dumps([LLAMAVID, long]))
    proc = _validate_cli(root, path, "llamavid", "fail", "--max-text-chars", "10000")
    assert proc.returncode == 0, proc.stderr
    assert "record 1 (long) has a text of 15000 characters (above --max-text-chars 10000; kept)" in proc.stderr
    assert len(json.loads((root / "out/checked.json").read_text())) == 2
    report = json.loads((root / "out/r.json").read_text())
    assert report["oversized_text_records"] == 1 and report["oversized_text"][0].startswith("record 1 (long)")
