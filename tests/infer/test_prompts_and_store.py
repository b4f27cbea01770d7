"""Prompts as the original builds them, the answer log's durability rules, settings checks, shard split."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from etchat.errors import ConfigError, DataError
from etchat.infer.prompts import BEST_OPTION, TEMPLATES, build_prompt, template_for, tokenize_prompt
from etchat.infer.samples import charades_question, parse_shard, shard_of
from etchat.infer.settings import InferSettings
from etchat.infer.store import AnswerLog
from etchat.model import IMAGE_TOKEN_INDEX

PHI3 = TEMPLATES["phi3"]


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return AutoTokenizer.from_pretrained(checkpoint)


def test_phi3_prompt_is_the_original_string():
    q = "What is happening at <vid> seconds? Options: (A) x (B) y."
    expected = (
        "<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\n<image>\n" + q + "<|end|>\n<|assistant|>\n"
    )
    assert build_prompt(PHI3, q, "tvg") == expected
    for task in ("rar", "eca", "rvq"):
        assert build_prompt(PHI3, q, task) == expected + "Best Option: ("
    assert BEST_OPTION == "Best Option: ("
    assert build_prompt(PHI3, q, "gvq") == expected  # gvq has options but no suffix in the original
    assert charades_question("a person opens a door.") == (
        "Localize the video moment according to the query 'a person opens a door'."
    )


def test_template_comes_from_the_checkpoint():
    assert template_for("phi3") is PHI3 and template_for(None) is PHI3
    with pytest.raises(ConfigError, match="stage-1 checkpoint"):
        template_for("plain")


def test_tokenization_splices_one_image_placeholder_and_one_bos(tokenizer):
    text = build_prompt(PHI3, "When does the red square appear?", "rar")
    ids = tokenize_prompt(text, tokenizer)
    assert ids.count(IMAGE_TOKEN_INDEX) == 1 and ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    before, after = text.split("<image>")
    cut = ids.index(IMAGE_TOKEN_INDEX)
    assert tokenizer.decode(ids[1:cut]) == before
    assert tokenizer.decode(ids[cut + 1 :]) == after


def test_inference_prompt_is_a_training_generation_prompt(tokenizer):
    """The inference prompt is what training's template renders for a question with an open answer, so prompts
    are tokenized exactly as in training (one template, one tokenizer function)."""
    text = build_prompt(PHI3, "What happens at <vid> seconds?", "tvg")
    user, assistant = PHI3.roles
    assert text == PHI3.render([(user, "<image>\nWhat happens at <vid> seconds?"), (assistant, None)])


def test_shards_are_a_strided_deterministic_partition():
    for n in (1, 3, 8):
        owners = [[s for s in range(1, n + 1) if shard_of(i, s, n)] for i in range(50)]
        assert all(len(o) == 1 for o in owners)
        assert [o[0] for o in owners] == [i % n + 1 for i in range(50)]
    assert parse_shard("2-of-8") == (2, 8)
    for bad in ("0-of-2", "3-of-2", "two"):
        with pytest.raises(DataError):
            parse_shard(bad)


def test_settings_are_checked_and_greedy_ignores_the_seed():
    with pytest.raises(ConfigError, match="infer.decoding"):
        InferSettings(decoding="beam")
    with pytest.raises(ConfigError, match="infer.batch_size"):
        InferSettings(batch_size=0)
    greedy = InferSettings(decoding="greedy")
    assert greedy.answer_settings() == greedy.replace(seed=7, temperature=0.7).answer_settings()
    paper = InferSettings()
    assert paper.answer_settings() != paper.replace(seed=7).answer_settings()
    assert paper.answer_settings() == paper.replace(batch_size=8, loader_workers=4).answer_settings()


def test_log_drops_a_partial_last_line_and_appends_cleanly(tmp_path):
    path = tmp_path / "s.jsonl"
    with AnswerLog(path) as log:
        log.append([{"key": "a", "fingerprint": "f", "sample": "1", "status": "ok"}])
    with open(path, "a") as f:
        f.write('{"key": "b", "fingerp')  # a writer killed mid-line
    with AnswerLog(path) as log:
        log.append([{"key": "b", "fingerprint": "f", "sample": "2", "status": "ok"}])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["key"] for line in lines] == ["a", "b"]


def test_log_state_separates_answers_errors_stale_and_foreign(tmp_path):
    path = tmp_path / "s.jsonl"
    with AnswerLog(path) as log:
        log.append(
            [
                {"key": "a", "fingerprint": "old", "sample": "1", "status": "ok"},
                {"key": "a", "fingerprint": "f", "sample": "1", "status": "ok"},
                {"key": "b", "fingerprint": "f", "sample": "2", "status": "error"},
                {"key": "c", "fingerprint": "f", "sample": "changed", "status": "ok"},
                {"key": "z", "fingerprint": "f", "sample": "9", "status": "ok"},
            ]
        )
    state = AnswerLog(path).state("f", {"a": "1", "b": "2", "c": "3"})
    assert set(state.answers) == {"a"} and set(state.errors) == {"b"}
    assert state.stale == 2 and state.foreign == 1


def test_a_damaged_line_in_the_middle_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match="s.jsonl: line 2"):
        AnswerLog(path).read()


def test_shard_jobs_on_one_machine_claim_different_gpus(monkeypatch, tmp_path):
    from etchat.infer import gpus

    current = []
    monkeypatch.setattr(gpus.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpus.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(gpus.torch.cuda, "set_device", current.append)
    monkeypatch.setattr(gpus, "_held", [])
    assert gpus.claim_gpu(tmp_path) == 0 and gpus.claim_gpu(tmp_path) == 1
    assert gpus.claim_gpu(tmp_path) is None  # both held (flock is per open file, so this works in one process)
    assert current == [0, 1]
    gpus._held.pop(0).close()  # the job holding GPU 0 ends
    assert gpus.claim_gpu(tmp_path) == 0
    for handle in gpus._held:
        handle.close()
    monkeypatch.setattr(gpus.torch.cuda, "device_count", lambda: 1)
    assert gpus.claim_gpu(tmp_path) is None  # one GPU (e.g. a SLURM job's): nothing to choose
