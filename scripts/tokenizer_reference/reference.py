"""Record the token ids and label masks that the original E.T. Chat tokenization produces, with its own stack.

Runs inside the environment `run.sh` builds (transformers 4.44.2, tokenizers 0.19.1, sentencepiece 0.2.0; no
torch), never in the project's. For each revision of Phi-3-mini's tokenizer files it follows the original's
tokenizer life cycle:

1. stage 1 loads the Phi-3 directory with the original's training arguments
   (`model_max_length=2048, add_prefix_space=False, legacy=False, use_fast=True`; in 4.44 passing
   `add_prefix_space` converts the SentencePiece model to a fast tokenizer that never prepends `▁`);
2. every stage saves its tokenizer into its checkpoint, and the next stage loads it from there with the same
   arguments; stage 3 adds `<vid>` as a special token before training;
3. inference loads the stage-3 checkpoint's tokenizer with no arguments.

and applies the original procedure to the inputs of `cases.py`: `plain` (stage 1) and `phi3` (stages 2-3)
conversations tokenized chunk by chunk around `<image>` with their label masks, the E.T. Bench prompt of each task
(with `Best Option: (` for the multiple-choice ones) and the Charades-STA prompt. The procedure is written here
from the original's description: messages stripped, `<image>` chunks joined with -200 keeping only the first
chunk's BOS, rounds split on `<|end|>`, instruction lengths measured by tokenizing each round on its own, one token
taken off every round after the first for its BOS, and only a warning when the lengths do not add up.

Writes `tests/fixtures/phi3_tokenizer/reference.json` (inputs, prompts, ids, supervised ranges, versions) and the
stage-2 and stage-3 checkpoints' tokenizer files of revision 2024-04 (what the released checkpoints hold) to
`checkpoint-stage2/` and `checkpoint-stage3/` beside it.

Usage (run.sh does this): python reference.py [--npm-tokenizer PATH]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata as md
import json
import platform
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
import phi3_files  # noqa: E402

IMAGE, IMAGE_INDEX, IGNORE, VID = "<image>", -200, -100, "<vid>"
SYSTEM, END = "<|system|>\nYou are a helpful AI assistant.", "<|end|>"
USER, ASSISTANT = "\n<|user|>\n", "\n<|assistant|>\n"
BEST_OPTION = "Best Option: ("
MULTIPLE_CHOICE = ("rar", "eca", "rvq")
TRAINING_ARGS = dict(model_max_length=2048, add_prefix_space=False, legacy=False, use_fast=True)
OUT = phi3_files.FIXTURES


# ------------------------------------------------------------------------------------------- the original's steps
def load_for_training(path: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, **TRAINING_ARGS)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_inference(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def chunked_ids(text: str, tokenizer: Any) -> list[int]:
    """Each `<image>`-separated chunk tokenized alone; the first chunk's BOS kept, later chunks' first token
    dropped when the first chunk began with BOS; -200 between chunks."""
    pieces = [tokenizer(chunk).input_ids for chunk in text.split(IMAGE)]
    keep_bos = bool(pieces and pieces[0] and pieces[0][0] == tokenizer.bos_token_id)
    ids = pieces[0][:1] if keep_bos else []
    for k, piece in enumerate(pieces):
        if k:
            ids.append(IMAGE_INDEX)
        ids.extend(piece[1:] if keep_bos else piece)
    return ids


def phi3_prompt(messages: list[tuple[str, str | None]]) -> str:
    text = SYSTEM + END
    for role, message in messages:
        text += role
        if message is not None:
            text += message
            if not text.endswith(END):
                text += END
    return text.lstrip("\n")


def plain_sample(conversations: list[dict[str, str]], tokenizer: Any) -> dict[str, Any]:
    query = conversations[0]["value"].replace(IMAGE, "").strip()
    prompt = IMAGE + conversations[1]["value"] + "\n"
    ids = chunked_ids(prompt, tokenizer)
    head = len(chunked_ids(IMAGE, tokenizer))
    labels = [IGNORE] * head + ids[head:]
    return {"prompt": prompt, "queries": [query], "input_ids": ids, "labels": labels, "mismatch": False}


def phi3_sample(conversations: list[dict[str, str]], tokenizer: Any, multimodal: bool) -> dict[str, Any]:
    messages, queries = [], []
    for k, turn in enumerate(conversations):
        role = USER if turn["from"] == "human" else ASSISTANT
        assert role == (USER, ASSISTANT)[k % 2]
        message = turn["value"].strip()
        assert message and message.count(IMAGE) in (0, 1)
        if multimodal and role == USER:
            assert IMAGE in message, "cases write every <image> out (no coin flip)"
        else:
            assert IMAGE not in message
        if role == USER:
            queries.append(message.replace(IMAGE, "").strip())
        messages.append((role, message))
    prompt = phi3_prompt(messages)
    ids = chunked_ids(prompt, tokenizer)
    parts = [p + END for p in prompt.split(END)]
    assert parts[-1] == END
    parts = parts[:-1]
    rounds = ["".join(parts[:3])] + ["".join(parts[i : i + 2]) for i in range(3, len(parts), 2)]
    labels, cur, header = list(ids), 0, END + ASSISTANT
    for k, text in enumerate(rounds):
        if not text:
            break
        instruction = header.join(text.split(header)[:-1]) + header
        round_len = len(chunked_ids(text, tokenizer))
        instruction_len = len(chunked_ids(instruction, tokenizer))
        if k > 0:  # the round's own BOS (qwen2 excepted, which is not phi3)
            round_len, instruction_len = round_len - 1, instruction_len - 1
        end = min(cur + instruction_len, len(labels))  # a tensor slice in the original: clipped, never extended
        labels[cur:end] = [IGNORE] * max(end - cur, 0)
        cur += round_len
    mismatch = cur != len(ids)
    if mismatch:
        warnings.warn(f"Tokenization mismatch: {len(ids)} and {cur}", stacklevel=2)
    return {"prompt": prompt, "queries": queries, "input_ids": ids, "labels": labels, "mismatch": mismatch}


def etbench_prompt(question: str, task: str) -> str:
    prompt = phi3_prompt([(USER, IMAGE + "\n" + question), (ASSISTANT, None)])
    if task in MULTIPLE_CHOICE:
        prompt += BEST_OPTION if prompt.endswith("\n") else " " + BEST_OPTION
    return prompt


def charades_prompt(query: str) -> str:
    question = f"Localize the video moment according to the query '{query.strip('.').strip()}'."
    return phi3_prompt([(USER, IMAGE + "\n" + question), (ASSISTANT, None)])


# ------------------------------------------------------------------------------------------------- recording
def supervised_ranges(labels: list[int]) -> list[list[int]]:
    """[start, end) index ranges of the supervised labels."""
    ranges: list[list[int]] = []
    for i, label in enumerate(labels):
        if label == IGNORE:
            continue
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def record_training(sample: dict[str, Any], case: dict[str, Any], template: str, tokenizer_name: str) -> dict:
    assert all(lab in (IGNORE, tok) for lab, tok in zip(sample["labels"], sample["input_ids"], strict=True))
    return {
        "name": case["name"],
        "template": template,
        "media": case["media"],
        "tokenizer": tokenizer_name,
        "conversations": case["conversations"],
        "prompt": sample["prompt"],
        "queries": sample["queries"],
        "input_ids": sample["input_ids"],
        "supervised": supervised_ranges(sample["labels"]),
        "original_warns_mismatch": sample["mismatch"],
    }


def record_revision(revision: str, work: Path) -> dict[str, Any]:
    phi3_dir = phi3_files.write_phi3_tokenizer(work / revision / "Phi-3-mini-4k-instruct", revision)
    stage1 = load_for_training(phi3_dir)
    stage1.save_pretrained(work / revision / "stage1")
    stage2 = load_for_training(work / revision / "stage1")
    stage2.save_pretrained(work / revision / "stage2")
    stage3 = load_for_training(work / revision / "stage2")
    stage3.add_special_tokens({"additional_special_tokens": [VID]})
    checkpoint = work / revision / "stage3"
    stage3.save_pretrained(checkpoint)
    inference = load_for_inference(checkpoint)
    tokenizers = {"stage1": stage1, "stage2": stage2, "stage3": stage3, "inference": inference}

    training = [record_training(plain_sample(c["conversations"], stage1), c, "plain", "stage1") for c in cases.PLAIN]
    for case in cases.PHI3:
        name = f"stage{case['stage']}"
        sample = phi3_sample(case["conversations"], tokenizers[name], case["media"] is not None)
        training.append(record_training(sample, case, "phi3", name))
    prompts = [{"task": c["task"], "question": c["q"], "prompt": etbench_prompt(c["q"], c["task"])}
               for c in cases.ETBENCH]  # fmt: skip
    prompts += [{"task": "charades", "question": q, "prompt": charades_prompt(q)} for q in cases.CHARADES]
    for entry in prompts:
        entry["input_ids"] = chunked_ids(entry["prompt"], inference)
        # training's stage-3 tokenizer must agree with what inference reloads from its checkpoint
        assert entry["input_ids"] == chunked_ids(entry["prompt"], stage3), entry["prompt"]
    for entry in training:  # the stages' tokenizers agree wherever <vid> plays no part
        if VID not in entry["prompt"]:
            for other in ("stage1", "stage2", "stage3", "inference"):
                assert chunked_ids(entry["prompt"], tokenizers[other]) == entry["input_ids"], (other, entry["name"])
    flags = {
        name: {
            "class": type(tok).__name__,
            "len": len(tok),
            "add_bos_token": getattr(tok, "add_bos_token", None),
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "vid_id": tok.convert_tokens_to_ids(VID) if VID in tok.get_vocab() else None,
            "normalizer": json.loads(tok.backend_tokenizer.to_str())["normalizer"],
            "pre_tokenizer": json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"],
        }
        for name, tok in tokenizers.items()
    }
    return {"tokenizers": flags, "training": training, "inference": prompts, "phi3_files": _digests(phi3_dir),
            "checkpoint_stage2_files": _digests(work / revision / "stage2"),
            "checkpoint_stage3_files": _digests(checkpoint)}  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------- material checks
def check_material(phi3_dir: Path, npm_tokenizer: Path | None) -> dict[str, Any]:
    """The SentencePiece model built from the npm vocabulary encodes as Llama-2's tokenizer.json does, and the
    4.44 converter turns it back into the same vocabulary and merges."""
    import sentencepiece
    from tokenizers import Tokenizer

    llama2 = phi3_files.llama2_tokenizer_json()
    if npm_tokenizer is not None:
        fetched = json.loads(npm_tokenizer.read_text(encoding="utf-8"))
        assert fetched == llama2, "the committed llama2-tokenizer.json.gz differs from the npm package's file"
    sp = sentencepiece.SentencePieceProcessor(model_file=str(phi3_dir / "tokenizer.model"))
    fast = Tokenizer.from_str(json.dumps(llama2))
    texts = [m["value"] for c in cases.PLAIN + cases.PHI3 for m in c["conversations"]]
    texts += [c["q"] for c in cases.ETBENCH] + cases.CHARADES
    texts += [" " * n + "x" + " " * n + "\n" * (n % 3) + "\t" * (n % 2) for n in range(1, 40)]
    texts += [(HERE / name).read_text(encoding="utf-8") for name in ("reference.py", "phi3_files.py", "cases.py")]
    # tokenizer.json treats <s>, </s> and <unk> as added tokens, sentencepiece as text: leave them out
    lines = [t for t in [line for t in texts for line in t.split("\n")] + texts if not re.search("<s>|</s>|<unk>", t)]
    bad = [t for t in lines if sp.encode(t) != fast.encode(t, add_special_tokens=False).ids]
    assert not bad, f"sentencepiece and tokenizer.json disagree on {len(bad)} texts, e.g. {bad[0]!r}"
    converted = json.loads(load_for_training(phi3_dir).backend_tokenizer.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in converted["merges"]]
    assert converted["vocab"] == llama2["model"]["vocab"], "converted vocabulary differs"
    assert sorted(merges) == sorted(llama2["model"]["merges"]), "converted merges differ"
    return {"texts_encoded_equal": len(lines), "converted_vocab_equal": True, "converted_merge_set_equal": True}


def check_family(phi3_dir: Path, family_model: Path) -> dict[str, Any]:
    """The built model's encoding-relevant spec fields, and its scoring rule, are those of a real SentencePiece
    model of the same family (Mistral's first tokenizer, shipped by PyPI's mistral-common)."""
    from transformers.utils import sentencepiece_model_pb2_new as pb

    ours, theirs = pb.ModelProto(), pb.ModelProto()
    ours.ParseFromString((phi3_dir / "tokenizer.model").read_bytes())
    theirs.ParseFromString(family_model.read_bytes())
    fields = {
        "trainer_spec": ("model_type", "vocab_size", "byte_fallback", "split_digits", "treat_whitespace_as_suffix",
                         "allow_whitespace_only_pieces", "unk_id", "bos_id", "eos_id", "pad_id", "unk_piece",
                         "bos_piece", "eos_piece", "unk_surface"),
        "normalizer_spec": ("name", "add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces"),
    }  # fmt: skip
    for spec, names in fields.items():
        for name in names:
            a, b = getattr(getattr(ours, spec), name), getattr(getattr(theirs, spec), name)
            assert a == b, f"{spec}.{name}: built {a!r}, {family_model.name} {b!r}"
    for model in (ours, theirs):  # the scoring rule phi3_files applies
        for token_id, piece in enumerate(model.pieces):
            if token_id >= phi3_files.FIRST_MERGED_ID:
                assert piece.score == phi3_files.piece_score(piece.piece, token_id), (token_id, piece.piece)
    return {"family_model": family_model.name, "spec_fields_equal": sum(map(len, fields.values())),
            "scoring_rule_holds_for_both": True}  # fmt: skip


def versions() -> dict[str, str]:
    names = ("transformers", "tokenizers", "sentencepiece", "protobuf", "huggingface-hub")
    return {"python": platform.python_version(), **{n: md.version(n) for n in names}}


def without_vid(tokenizer_json: dict[str, Any]) -> dict[str, Any]:
    """A stage-3 tokenizer.json as the stage-2 one: the same but for the added `<vid>`."""
    return {**tokenizer_json, "added_tokens": [t for t in tokenizer_json["added_tokens"] if t["content"] != VID]}


def write_checkpoint_fixtures(work: Path) -> None:
    """The stage-2 and stage-3 checkpoints' tokenizer files. Their tokenizer.json differ only by `<vid>` (checked),
    so stage 2 keeps only its small files; tokenizer.model is the Phi-3 directory's (digest in reference.json)."""
    stage2, stage3 = work / "stage2", work / "stage3"
    json2, json3 = (json.loads((d / "tokenizer.json").read_text(encoding="utf-8")) for d in (stage2, stage3))
    assert json2 == without_vid(json3), "stage-2 and stage-3 tokenizer.json differ beyond <vid>"
    for name, source in (("checkpoint-stage2", stage2), ("checkpoint-stage3", stage3)):
        out = OUT / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for path in sorted(source.iterdir()):
            if path.name == "tokenizer.json":
                if name == "checkpoint-stage3":
                    (out / "tokenizer.json.gz").write_bytes(gzip.compress(path.read_bytes(), mtime=0))
            elif path.name != "tokenizer.model":
                shutil.copy2(path, out / path.name)
        provenance = {
            "what": f"the tokenizer files the original's training saves into its {name[11:]} checkpoint",
            "made_by": "scripts/tokenizer_reference/run.sh (save_pretrained of the original's tokenizer life cycle)",
            "phi3_revision": "2024-04",
            "versions": versions(),
            "tokenizer.json": "gzipped here; stage 2's is stage 3's without the added <vid>",
            "tokenizer.model": "the Phi-3 directory's (scripts/tokenizer_reference/phi3_files.py), by digest",
        }
        (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npm-tokenizer", type=Path, help="tokenizer.json from the npm tarball, to compare")
    parser.add_argument("--family-model", type=Path, help="a SentencePiece model of the same family, to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        check_dir = phi3_files.write_phi3_tokenizer(work / "check", "2024-04")
        material = check_material(check_dir, args.npm_tokenizer)
        if args.family_model is not None:
            material.update(check_family(check_dir, args.family_model))
        revisions = {revision: record_revision(revision, work) for revision in phi3_files.REVISIONS}
        write_checkpoint_fixtures(work / "2024-04")
    reference = {
        "about": "token ids and label masks of the original E.T. Chat tokenization (README: Tokenization)",
        "made_by": "scripts/tokenizer_reference/run.sh",
        "versions": versions(),
        "vocabulary": {**phi3_files.LLAMA2_SOURCE, "member_sha256": phi3_files.llama2_digest()},
        "material_checks": material,
        "training_arguments": TRAINING_ARGS,
        "revisions": revisions,
    }
    path = OUT / "reference.json"
    path.write_text(_compact_json(reference), encoding="utf-8")
    print(f"wrote {path}, {OUT / 'checkpoint-stage2'} and {OUT / 'checkpoint-stage3'}")


def _compact_json(data: Any) -> str:
    """Indented JSON with every list of numbers on one line (reviewable, and small)."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    numbers = re.compile(r"\[\s*-?\d+(?:,\s*-?\d+)*\s*\]")
    return numbers.sub(lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text) + "\n"


if __name__ == "__main__":
    main()
