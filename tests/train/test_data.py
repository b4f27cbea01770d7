"""Conversation templates, tokenization and label masking, skipped records, collation (real decord, real ffmpeg)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from etchat.data.collate import TrainingCollator, modality_grouped_indices
from etchat.data.conversation import ConversationError, build_conversation
from etchat.data.dataset import (
    DataSettings,
    MediaSource,
    SkippedSample,
    check_skip_rate,
    prepare_dataset,
    read_skipped,
    write_skipped,
)
from etchat.data.tokenization import TokenizationError, tokenize_conversation, tokenize_prompt
from etchat.errors import DataError
from etchat.model.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

SYSTEM = "<|system|>\nYou are a helpful AI assistant.<|end|>"


def chat(*turns: str, **extra) -> dict:
    return {"conversations": [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(turns)],
            **extra}  # fmt: skip


# ---------------------------------------------------------------------------------------------- templates
def test_phi3_prompt_is_the_original_string():
    conv = build_conversation(chat("<image>\nWhen does it start?", "At <vid>."), "phi3", has_media=True)
    assert conv.prompt == (f"{SYSTEM}\n<|user|>\n<image>\nWhen does it start?<|end|>\n<|assistant|>\nAt <vid>.<|end|>")
    assert conv.queries == ["When does it start?"]


def test_phi3_adds_one_image_per_human_turn_the_same_way_every_time():
    record = chat("What is it?", "A square.", "And then?", "A circle.")
    first = build_conversation(record, "phi3", has_media=True, seed=3, index=7)
    again = build_conversation(record, "phi3", has_media=True, seed=3, index=7)
    assert first.prompt == again.prompt  # the placement coin is seeded per record, not global
    assert first.prompt.count("<image>") == 2 and first.queries == ["What is it?", "And then?"]
    placements = {
        build_conversation(record, "phi3", has_media=True, seed=0, index=i).prompt.split("<|user|>\n")[1][:7]
        for i in range(20)
    }
    assert placements == {"<image>", "What is"}  # both sides occur, as the original's coin flip
    # Start-up's placement=False draws nothing; what it checks (length, <image> and <vid> counts) is the same.
    for i in range(20):
        real = build_conversation(record, "phi3", has_media=True, seed=0, index=i)
        quick = build_conversation(record, "phi3", has_media=True, seed=0, index=i, placement=False)
        assert sorted(quick.prompt) == sorted(real.prompt) and quick.queries == real.queries


def test_text_only_records_get_no_image_and_plain_needs_one():
    conv = build_conversation(chat("Hi", "Hello"), "phi3", has_media=False)
    assert "<image>" not in conv.prompt and conv.queries == []
    plain = build_conversation(chat("Describe it.\n<image>", "a red square"), "plain", has_media=True)
    assert plain.prompt == "<image>a red square\n" and plain.queries == ["Describe it."]
    with pytest.raises(ConversationError, match="exactly one human and one gpt"):
        build_conversation(chat("<image>\na", "b", "c", "d"), "plain", has_media=True)


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ([{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}], "expected 'human'"),
        ([{"from": "human", "value": "x"}], "ends with a human turn"),
        ([{"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "y"}], "2 <image>"),
        ([{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "<image>"}], "<image> in a gpt turn"),
        ([{"from": "human", "value": "a"}, {"from": "gpt", "value": "b<|end|>c"}], "reserved"),
    ],
)
def test_broken_conversations_are_refused(turns, message):
    with pytest.raises(ConversationError, match=message):
        build_conversation({"conversations": turns}, "phi3", has_media=True)


# ---------------------------------------------------------------------------------------------- tokenization
def test_image_token_splits_the_prompt_with_one_bos(tokenizer):
    ids = tokenize_prompt("<image>\nabc<image>de", tokenizer)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids.count(IMAGE_TOKEN_INDEX) == 2 and ids[1] == IMAGE_TOKEN_INDEX


def supervised_text(tokenizer, sample) -> list[str]:
    """The supervised spans, decoded."""
    spans, current = [], []
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return [tokenizer.decode(s) for s in spans]


def test_phi3_labels_supervise_only_the_answers_and_their_end(tokenizer):
    record = chat("<image>\nWhen?", "At <vid>.", "And the red one?", "From <vid> to <vid>.")
    conv = build_conversation(record, "phi3", has_media=True)
    sample = tokenize_conversation(conv, tokenizer)
    assert supervised_text(tokenizer, sample) == ["At <vid>.<|end|>", "From <vid> to <vid>.<|end|>"]


def test_plain_labels_supervise_the_caption_and_newline(tokenizer):
    conv = build_conversation(chat("<image>\nDescribe.", "a red square"), "plain", has_media=True)
    sample = tokenize_conversation(conv, tokenizer)
    assert sample.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX] and sample.input_ids[1] == IMAGE_TOKEN_INDEX
    assert supervised_text(tokenizer, sample) == ["a red square\n"]


class RewritingTokenizer:
    """The demo tokenizer applied to a rewritten text: `rewrite` simulates what real tokenizers do at the template's
    boundaries (Phi-3's chat tokens swallow the newline after them; some tokenizers merge across a boundary)."""

    def __init__(self, inner, rewrite):
        self.inner, self.rewrite = inner, rewrite
        self.bos_token_id = inner.bos_token_id

    def __call__(self, text, add_special_tokens=True):
        return self.inner(self.rewrite(text), add_special_tokens=add_special_tokens)

    def convert_ids_to_tokens(self, i):
        return self.inner.convert_ids_to_tokens(i)


TWO_ROUNDS = ("<image>\nWhen?", "At <vid>.", "And the red one?", "From <vid> to <vid>.")


def test_the_original_label_arithmetic_is_kept_where_it_does_not_add_up(tokenizer):
    """As with Phi-3's rstrip chat tokens: the newline after <|end|> vanishes in the whole prompt but not in a
    round tokenized alone, so the original masks the second round one token late (and only warned)."""
    rstrip = RewritingTokenizer(tokenizer, lambda text: text.replace("<|end|>\n", "<|end|>"))
    conv = build_conversation(chat(*TWO_ROUNDS), "phi3", has_media=True)
    original = tokenize_conversation(conv, rstrip)
    assert original.mismatch
    assert supervised_text(tokenizer, original)[0] == "At <vid>.<|end|>"
    assert supervised_text(tokenizer, original)[1] != "From <vid> to <vid>.<|end|>"
    exact = tokenize_conversation(conv, rstrip, label_masks="exact")
    assert exact.input_ids == original.input_ids and not exact.mismatch
    assert supervised_text(tokenizer, exact) == ["At <vid>.<|end|>", "From <vid> to <vid>.<|end|>"]


def test_exact_and_original_masks_agree_where_the_arithmetic_adds_up(tokenizer):
    conv = build_conversation(chat(*TWO_ROUNDS), "phi3", has_media=True)
    original = tokenize_conversation(conv, tokenizer)
    assert not original.mismatch
    assert tokenize_conversation(conv, tokenizer, label_masks="exact").labels == original.labels


def test_exact_masks_stop_on_a_tokenizer_that_merges_across_a_boundary(tokenizer):
    merging = RewritingTokenizer(tokenizer, lambda text: re.sub(r"<\|assistant\|>\n(?=.)", "<|assistant|>", text))
    conv = build_conversation(chat("<image>\nWhen?", "At <vid>."), "phi3", has_media=True)
    with pytest.raises(TokenizationError, match="record 4 .*merges across the template's boundaries"):
        tokenize_conversation(conv, merging, "record 4 (x)", label_masks="exact")


def test_messages_are_stripped_and_empty_turns_refused():
    conv = build_conversation(chat("  <image>\n When? \n", "\n At 3. "), "phi3", has_media=True)
    assert conv.prompt.endswith("<|user|>\n<image>\n When?<|end|>\n<|assistant|>\nAt 3.<|end|>")
    assert conv.queries == ["When?"]
    with pytest.raises(ConversationError, match="an empty gpt turn"):
        build_conversation(chat("<image>\nWhen?", "  \n"), "phi3", has_media=True)


def test_start_up_labels_a_sample_and_counts_the_original_mismatches(tokenizer, stage3_files, tmp_path):
    records, media = stage3_files
    prepared = prepare_dataset(records, SETTINGS, media, tokenizer)
    assert prepared.labels_checked == 4 and prepared.label_mismatches == 0
    rstrip = RewritingTokenizer(tokenizer, lambda text: text.replace("<|end|>\n", "<|end|>"))
    (tmp_path / "x.png").touch()
    two_rounds = [chat(*TWO_ROUNDS, image="x.png")] * 3
    prepared = prepare_dataset(two_rounds, DataSettings(template="phi3"), MediaSource(image_root=tmp_path), rstrip)
    assert prepared.labels_checked == 3 and prepared.label_mismatches == 3


# ---------------------------------------------------------------------------------------------- skipped records
@pytest.fixture
def stage3_files(tmp_path, make_video):
    """Stage-3 style records over real videos: good ones and one of each kind of unusable record."""
    root = tmp_path / "videos"
    make_video(root / "good.mp4", 6)
    make_video(root / "long.mp4", 9)
    make_video(root / "failed.mp4", 6)
    make_video(root / "unlisted.mp4", 6)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    manifest = tmp_path / "manifest.tsv"
    rows = [("good.mp4", "ok", "6.0", ""), ("long.mp4", "ok", "9.0", ""), ("failed.mp4", "failed", "", "bad stream"),
            ("missing.mp4", "ok", "6.0", ""), ("corrupt.mp4", "ok", "6.0", "")]  # fmt: skip
    pd.DataFrame(rows, columns=["path", "status", "out_duration", "error"]).assign(in_duration="").to_csv(
        manifest, sep="\t", index=False
    )
    ask = "<image>\nWhen does the square appear?"
    records = [
        chat(ask, "In <vid> - <vid> seconds.", video="good.mp4", tgt=[1.0, 3.0], task="tvg"),  # 0 ok
        chat(ask, "In <vid> - <vid> seconds.", video="good.mp4", tgt=[2.0, 4.5], task="tvg"),  # 1 ok
        chat(ask, "At <vid>.", video="long.mp4", tgt=[2.0]),  # 2 filtered: longer than max_video_len 8
        chat(ask, "At <vid>.", video="failed.mp4", tgt=[2.0]),  # 3 skipped: failed compression
        chat(ask, "At <vid>.", video="missing.mp4", tgt=[2.0]),  # 4 skipped: file missing
        chat(ask, "At <vid>.", video="unlisted.mp4", tgt=[2.0]),  # 5 skipped: not in the manifest
        chat(ask, "At <vid>.", video="good.mp4", tgt=[1.0, 2.0]),  # 6 skipped: 1 <vid> for 2 timestamps
        {"video": "good.mp4", "conversations": [{"from": "gpt", "value": "x"}]},  # 7 skipped: broken conversation
        chat(ask, "At <vid>.", video="corrupt.mp4", tgt=[1.0]),  # 8 passes the checks, fails to decode
        chat(ask, "word " * 90, video="good.mp4"),  # 9 passes the checks, too long for model_max_length 96
    ]
    return records, MediaSource.from_manifest(manifest, root, None)


SETTINGS = DataSettings(template="phi3", use_matching=True, max_video_len=8, model_max_length=96,
                        vision_processor="clip_center_16")  # fmt: skip


def test_unusable_records_are_listed_with_their_reason_and_never_replaced(tokenizer, stage3_files, tmp_path):
    records, media = stage3_files
    prepared = prepare_dataset(records, SETTINGS, media, tokenizer)
    reasons = {r.index: (r.kind, r.reason) for r in prepared.skipped}
    assert [item.index for item in prepared.dataset.items] == [0, 1, 8, 9]
    assert reasons[2][0] == "filtered" and "max_video_len" in reasons[2][1]
    assert reasons[3] == ("skipped", "video failed compression: bad stream")
    assert "not found" in reasons[4][1]
    assert "not in the compression manifest" in reasons[5][1]
    assert "1 <vid> tokens but 2 timestamps" in reasons[6][1]
    assert "broken conversation" in reasons[7][1]
    assert prepared.num_skipped == 5 and prepared.num_filtered == 1

    # A video that cannot be decoded, and a text longer than model_max_length, are skipped while training: the
    # collator leaves them out and lists them.
    samples = [prepared.dataset[i] for i in range(len(prepared.dataset))]
    assert isinstance(samples[2], SkippedSample) and "cannot load video" in samples[2].row.reason
    assert isinstance(samples[3], SkippedSample) and re.match(r"too long: \d+ text tokens > model_max_length 96",
                                                              samples[3].row.reason)  # fmt: skip
    batch = TrainingCollator(tokenizer.pad_token_id, tokenizer.bos_token_id, use_matching=True)(samples)
    assert batch["input_ids"].shape[0] == 2 and [r.index for r in batch["skipped"]] == [8, 9]
    assert batch["frames"][0].shape == (6, 3, 16, 16)  # 6 s at 1 fps, clip_center_16
    assert batch["tgt"] == [[1.0, 3.0], [2.0, 4.5]]

    tsv = tmp_path / "skipped.tsv"
    write_skipped(prepared.skipped + batch["skipped"], tsv)
    table = list(csv.DictReader(open(tsv), delimiter="\t"))
    assert [int(r["index"]) for r in table] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert table[-2]["phase"] == "train" and table[-2]["media"] == "video:corrupt.mp4"
    assert table[-1]["phase"] == "train" and table[-1]["reason"].startswith("too long")
    assert len(read_skipped(tsv)) == 8


def test_too_many_skipped_records_fail_the_run_naming_the_tsv(tokenizer, stage3_files, tmp_path):
    records, media = stage3_files
    prepared = prepare_dataset(records, SETTINGS, media, tokenizer)
    tsv = tmp_path / "skipped.tsv"
    with pytest.raises(DataError, match=rf"5 of 10 records \(50.0%\).*{tsv}"):
        check_skip_rate(prepared.skipped, prepared.total, 0.4, tsv, "stage 3")
    assert check_skip_rate(prepared.skipped, prepared.total, 0.5, tsv, "stage 3") == pytest.approx(0.5)


def test_holdout_keeps_whole_videos_out(tokenizer, stage3_files):
    records, media = stage3_files
    prepared = prepare_dataset(records, SETTINGS, media, tokenizer, holdout_fraction=0.5)
    held = {records[i]["video"] for i in prepared.heldout}
    used = {records[item.index]["video"] for item in prepared.dataset.items}
    assert not held & used


def test_an_empty_micro_batch_becomes_a_placeholder_without_targets(tokenizer):
    from etchat.data.dataset import SkipRow

    skipped = SkippedSample(SkipRow(3, "x", "video:x.mp4", "skipped", "train", "cannot load video"))
    batch = TrainingCollator(tokenizer.pad_token_id, tokenizer.bos_token_id, use_matching=True)([skipped])
    assert batch["num_samples"] == 0 and (batch["labels"] == IGNORE_INDEX).all()
    assert batch["frames"] == [None] and batch["tgt"] == [[]]


def test_modality_grouped_batches_hold_one_modality():
    modalities = ["video"] * 13 + ["text"] * 7 + ["image"] * 6
    lengths = list(range(1, 27))
    order = modality_grouped_indices(modalities, lengths, 2, 2, torch.Generator().manual_seed(0))
    assert len(order) == 16 + 4 and len(set(order)) == len(order)  # 19 media, 7 text: incomplete megabatches dropped
    for k in range(0, len(order), 4):
        kinds = {modalities[i] == "text" for i in order[k : k + 4]}
        assert len(kinds) == 1


def test_media_source_reads_the_compression_manifest(tmp_path):
    manifest = tmp_path / "m.tsv"
    pd.DataFrame(
        [("a.mp4", "ok", "3.5", "3.4", ""), ("b.mp4", "failed", "", "", "no video stream")],
        columns=["path", "status", "out_duration", "in_duration", "error"],
    ).to_csv(manifest, sep="\t", index=False)
    media = MediaSource.from_manifest(manifest, Path("v"), None)
    assert media.video_status == {"a.mp4": "ok", "b.mp4": "no video stream"}
    assert media.video_durations == {"a.mp4": 3.5}


# ---------------------------------------------------------------------------------------------- working directory
def test_workdir_keeps_only_complete_checkpoints_of_its_fingerprint(tmp_path):
    from etchat.train.workdir import WorkDir

    work = WorkDir(tmp_path / "work")
    assert work.claim("a", {}) is False  # fresh
    for step in (2, 4, 6):
        (work.checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    work.mark_complete(2, keep=None)
    work.mark_complete(4, keep=None)  # checkpoint-6 was being written when the process died
    assert work.latest() == work.checkpoints / "checkpoint-4"
    assert work.claim("a", {}) is True
    assert work.remove_incomplete() == [work.checkpoints / "checkpoint-6"]
    work.mark_complete(4, keep=1)  # rotation keeps the newest complete one
    assert [p.name for _, p in work.complete_checkpoints()] == ["checkpoint-4"]
    (work.root / "metrics.live.tsv").write_text("x")
    assert work.claim("b", {}) is False  # other settings or inputs: start afresh
    assert work.latest() is None and not (work.root / "metrics.live.tsv").exists()
