"""The shard runner on a real tiny checkpoint and real videos: batching, resume, staleness, bad samples, merge."""

from __future__ import annotations

import functools
import json

import pytest
from helpers import force_vid
from infer_helpers import etbench_records

from etchat.errors import DataError
from etchat.infer.engine import select_frames
from etchat.infer.merge import merge
from etchat.infer.runner import ShardRunner
from etchat.infer.samples import charades_samples, etbench_samples
from etchat.infer.store import read_lines

ANSWER_FIELDS = ("answer", "raw", "matched_frames", "vid_values", "tokens", "stopped", "frames", "seed")


def run(engine, samples, log, **kwargs):
    return ShardRunner(engine, "etbench", log).run(samples, **kwargs)


def answers(log) -> dict[str, tuple]:
    return {line["key"]: tuple(json.dumps(line.get(f)) for f in ANSWER_FIELDS) for line in read_lines(log)}


def steer(monkeypatch, engine, **kwargs):
    """Make the random model emit <vid>s (steps 1 and 3) and stop (step 5), per sample, batch-independently."""
    vid = engine.match_id
    stop = engine.tokenizer.convert_tokens_to_ids("<|end|>")
    monkeypatch.setattr(
        engine.model,
        "generate",
        functools.partial(engine.model.generate, logits_processor=force_vid(vid, stop, **kwargs)),
    )


@pytest.mark.parametrize("decoding", ["greedy", "paper"])
def test_batched_answers_equal_batch_of_one(engine_for, etbench_file, videos, tmp_path, decoding):
    samples = etbench_samples(etbench_file(), videos)
    one = run(engine_for(decoding=decoding, batch_size=1), samples, tmp_path / "b1.jsonl")
    four = run(engine_for(decoding=decoding, batch_size=4), samples, tmp_path / "b4.jsonl")
    assert one.answered == four.answered == len(samples) and one.errors == 0
    assert one.fingerprint == four.fingerprint  # the batch size does not change what an answer is
    assert answers(tmp_path / "b1.jsonl") == answers(tmp_path / "b4.jsonl")
    assert max(line["batch"] for line in read_lines(tmp_path / "b4.jsonl")) == 4
    if decoding == "paper":  # seeded sampling: the same answers on every run
        again = run(engine_for(decoding=decoding, batch_size=3), samples, tmp_path / "again.jsonl")
        assert again.answered == len(samples)
        assert answers(tmp_path / "again.jsonl") == answers(tmp_path / "b1.jsonl")


def test_lines_record_what_produced_the_answer(engine_for, etbench_file, videos, tmp_path, monkeypatch):
    engine = engine_for(decoding="greedy")
    steer(monkeypatch, engine)
    samples = etbench_samples(etbench_file(), videos)
    run(engine, samples, tmp_path / "s.jsonl")
    lines = {line["key"]: line for line in read_lines(tmp_path / "s.jsonl")}
    rar = lines["rar/s/0"]
    assert rar["prompt"].endswith("<|end|>\n<|assistant|>\nBest Option: (")
    assert rar["checkpoint"] == engine.digest and rar["template"] == "phi3" and rar["fps"] == 1
    assert rar["decoding"]["decoding"] == "greedy" and rar["decoding"]["repetition_penalty"] == 1.2
    assert rar["frames"] == rar["frames_sampled"] == 9 and rar["capped_by"] is None  # 9 s video at 1 fps
    # Two <vid>s, written as the matched frame index (1 fps: seconds), and the raw text keeps the tokens.
    assert rar["raw"].count("<vid>") == 2 and len(rar["matched_frames"]) == 2
    assert rar["vid_values"] == rar["matched_frames"] and rar["vid_times"] == "index"
    assert "<vid>" not in rar["answer"] and rar["stopped"] and rar["tokens"] == 6
    assert all(str(f) in rar["answer"] for f in rar["matched_frames"])
    assert rar["vid_seconds"] == [pytest.approx(f, abs=0.05) for f in rar["matched_frames"]]
    assert lines["tvg/s/0"]["frames"] == 12 and not lines["tvg/s/0"]["prompt"].endswith("(")


def test_kill_and_resume_answers_each_sample_once(engine_for, etbench_file, videos, tmp_path, monkeypatch):
    engine = engine_for(decoding="greedy")
    samples = etbench_samples(etbench_file(), videos)
    log = tmp_path / "s.jsonl"
    calls = {"n": 0}
    original = engine.generate

    def dies_on_third_batch(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # not an Exception: the runner cannot catch it, like a kill
        return original(batch)

    monkeypatch.setattr(engine, "generate", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run(engine, samples, log)
    first = read_lines(log)
    assert len(first) == 2
    with open(log, "a") as f:
        f.write('{"key": "tvg/s/1", "status": "o')  # and a line cut off by the kill
    monkeypatch.setattr(engine, "generate", original)
    summary = run(engine, samples, log)
    assert summary.reused == 2 and summary.answered == len(samples) - 2
    final = read_lines(log)
    assert sorted(line["key"] for line in final) == sorted(s.key for s in samples)  # none twice, none lost
    assert final[:2] == first  # the finished answers were kept, not recomputed
    assert run(engine, samples, log).answered == 0  # a third run has nothing to do


def test_changed_settings_or_checkpoint_make_old_lines_stale(
    engine_for, etbench_file, videos, tmp_path, other_checkpoint
):
    samples = etbench_samples(etbench_file(), videos)
    log = tmp_path / "s.jsonl"
    n = len(samples)
    assert run(engine_for(decoding="greedy"), samples, log).answered == n
    paper = run(engine_for(decoding="paper"), samples, log)
    assert (paper.answered, paper.reused, paper.stale_lines) == (n, 0, n)
    longer = run(engine_for(decoding="paper", max_new_tokens=9), samples, log)
    assert (longer.answered, longer.stale_lines) == (n, 2 * n)
    other = run(engine_for(other_checkpoint, decoding="paper", max_new_tokens=9), samples, log)
    assert other.answered == n and other.checkpoint["digest"] != longer.checkpoint["digest"]
    assert run(engine_for(decoding="paper", max_new_tokens=9), samples, log).reused == n
    # A changed annotation record (or video) changes that sample's digest: only it is answered again.
    records = etbench_records()
    records[1]["q"] = "When does the blue square appear?"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(records))
    again = run(engine_for(decoding="paper", max_new_tokens=9), etbench_samples(changed, videos), log)
    assert (again.answered, again.reused) == (1, n - 1)


def test_missing_and_broken_videos_are_error_lines_and_merge_reports_them(engine_for, etbench_file, videos, tmp_path):
    extra = [
        {**etbench_records()[1], "idx": 7, "video": "sub/missing.mp4"},
        {**etbench_records()[1], "idx": 8, "video": "sub/broken.mp4"},
    ]
    path = etbench_file(extra)
    samples = etbench_samples(path, videos)
    engine = engine_for(decoding="greedy", batch_size=4)
    logs = [tmp_path / "1.jsonl", tmp_path / "2.jsonl"]
    summaries = [
        run(engine, [s for s in samples if s.index % 2 == k], logs[k], shard=k + 1, shards=2).to_dict()
        for k in range(2)
    ]
    assert sum(s["errors"] for s in summaries) == 2 and sum(s["answered"] for s in summaries) == len(samples) - 2
    errors = {e["video"]: e["error"] for s in summaries for e in s["error_samples"]}
    assert "video not found" in errors["sub/missing.mp4"] and "cannot decode" in errors["sub/broken.mp4"]

    result = merge("etbench", samples, summaries, on_error="empty")
    records = json.loads(path.read_text())
    # Exactly the annotation list, in order, each with `a` added; errors answered "" and listed apart.
    assert [{k: v for k, v in p.items() if k != "a"} for p in result.predictions] == records
    assert all(list(p)[-1] == "a" and isinstance(p["a"], str) for p in result.predictions)
    assert [p["a"] for p in result.predictions[-2:]] == ["", ""] and all(p["a"] for p in result.predictions[:-2])
    assert result.summary["errors"] == 2 and result.summary["missing"] == 0
    assert {e["video"] for e in result.summary["error_samples"]} == {"sub/missing.mp4", "sub/broken.mp4"}
    with pytest.raises(DataError, match=r"2 samples could not be answered[\s\S]*sub/missing.mp4"):
        merge("etbench", samples, summaries, on_error="fail")

    # A sample with no line at all is missing: the merge fails and names it.
    kept = [line for line in read_lines(logs[1]) if line["key"] != "tvg/s/0"]  # index 1: shard 2
    logs[1].write_text("".join(json.dumps(line) + "\n" for line in kept))
    with pytest.raises(DataError, match=r"1 of 8 samples have no answer[\s\S]*#1 tvg/s/0 tvg \(sub/b.mp4\)"):
        merge("etbench", samples, summaries)


def test_frame_cap_and_context_guard(engine_for, etbench_file, videos, tmp_path, monkeypatch):
    samples = [s for s in etbench_samples(etbench_file(), videos) if s.key in ("rar/s/0", "tvg/s/0")]
    capped = engine_for(decoding="greedy", max_frames=4)
    steer(monkeypatch, capped)
    summary = run(capped, samples, tmp_path / "cap.jsonl")
    assert summary.capped == 2 and sorted(summary.capped_samples) == ["rar/s/0", "tvg/s/0"]
    for line in read_lines(tmp_path / "cap.jsonl"):
        assert line["frames"] == 4 and line["capped_by"] == "max_frames" and line["warnings"]
        # Frame index != seconds now: the answer gives the matched frame's real time.
        assert line["vid_times"] == "seconds" and line["vid_values"] == [round(t, 1) for t in line["vid_seconds"]]
        assert all(f"{v:g}" in line["answer"] for v in line["vid_values"])
        # The kept frames are spread uniformly (first and last kept); at 1 fps frame k is at k s.
        kept = select_frames(line["frames_sampled"], 4)
        assert kept[0] == 0 and kept[-1] == line["frames_sampled"] - 1
        assert set(line["vid_seconds"]) <= {float(k) for k in kept}
    # The question's <vid> (2.4 s) goes to the kept frame nearest in time (3 s: position 1 of [0, 3, 5, 8]).
    assert capped.prepare(samples[0]).src == [1.0]
    assert engine_for(decoding="greedy").prepare(samples[0]).src == [2.4]  # uncapped: seconds, as the original

    # Context guard: a context that fits the prompt, 5 frames and the reserve keeps 5 frames and limits the answer.
    probe = engine_for(decoding="greedy")
    text_len = len(probe.prepare(samples[1]).input_ids) - 1
    guarded = engine_for(decoding="greedy", context_length=text_len + 5 + 3, answer_reserve=3, max_new_tokens=8)
    prepared = guarded.prepare(samples[1])
    assert prepared.frames.shape[0] == 5 and prepared.capped_by == "context" and prepared.max_new_tokens == 3
    line = run(guarded, samples[1:], tmp_path / "ctx.jsonl").to_dict()
    assert line["capped"] == 1
    out = read_lines(tmp_path / "ctx.jsonl")[0]
    assert out["tokens"] <= 3 and out["max_new_tokens"] == 3
    assert out["truncated"] == (not out["stopped"])
    # A question that leaves no room for frames is an error line, not a crash.
    tiny = engine_for(decoding="greedy", context_length=text_len, answer_reserve=1)
    assert run(tiny, samples[1:], tmp_path / "none.jsonl").errors == 1


def test_charades_predictions_are_what_the_scorer_reads(engine_for, charades_file, videos, tmp_path, monkeypatch):
    from etchat.evaluate.charades import charades_metrics, load_charades_predictions

    engine = engine_for(decoding="greedy")
    steer(monkeypatch, engine)
    samples = charades_samples(charades_file, videos / "sub")
    assert samples[1].record["span"] == [2.0, 6.2] and samples[2].question.endswith("query 'nothing'.")
    summary = ShardRunner(engine, "charades", tmp_path / "c.jsonl").run(samples).to_dict()
    result = merge("charades", samples, [summary])
    assert [set(p) for p in result.predictions] == [{"vid", "query", "span", "pred", "response"}] * 3
    assert all(len(p["pred"]) == 2 and all(isinstance(v, int) for v in p["pred"]) for p in result.predictions)
    out = tmp_path / "predictions.json"
    out.write_text(json.dumps(result.predictions))
    metrics = charades_metrics(load_charades_predictions(out))
    assert metrics["Total"] == 3 and 0 <= metrics["mIoU"] <= 1


def test_a_new_shard_count_takes_over_the_finished_answers(engine_for, etbench_file, videos, tmp_path):
    engine = engine_for(decoding="greedy")
    samples = etbench_samples(etbench_file(), videos)
    first = ShardRunner(engine, "etbench", tmp_path / "1-of-1.jsonl").run(samples[:4])
    assert first.answered == 4
    for shard in (1, 2):
        mine = [s for s in samples if s.index % 2 == shard - 1]
        summary = ShardRunner(engine, "etbench", tmp_path / f"{shard}-of-2.jsonl").run(mine, shard, 2)
        assert summary.reused == 2 and summary.answered == len(mine) - 2  # of samples 0-3, two are in each shard
    lines = read_lines(tmp_path / "1-of-2.jsonl") + read_lines(tmp_path / "2-of-2.jsonl")
    assert sorted(line["key"] for line in lines) == sorted(s.key for s in samples)
    old = {line["key"]: line for line in read_lines(tmp_path / "1-of-1.jsonl")}
    assert all(line == old[line["key"]] for line in lines if line["key"] in old)


@pytest.mark.parametrize("vid_times", ["index", "seconds"])
def test_an_answer_spelling_vid_in_text_writes_times_as_the_normal_path_does(
    engine_for, etbench_file, videos, vid_times
):
    engine = engine_for(decoding="greedy", vid_times=vid_times)
    p = engine.prepare(etbench_samples(etbench_file(), videos)[0])
    tok = engine.tokenizer

    def text(s):
        return tok.encode(s, add_special_tokens=False)

    spelled = [i for c in "<vid>" for i in text(c)]  # "<vid>" in ordinary tokens: the split by text miscounts
    ids = text("At ") + [engine.match_id] + text(" to ") + [engine.match_id] + text(" or ") + spelled
    line = engine._answer_line(p, ids, [3, -1], 0.1, 1)
    assert p.frame_times[3] == 3.0 and line["answer"] == "At 3 to -1 or <vid>"  # as detokenize writes them
    assert any("token by token" in w for w in line["warnings"])
