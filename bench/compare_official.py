"""Developer tool: score the same predictions with the official E.T. Bench script and with ours, and diff.

Not a test and never run in CI. The official `evaluation/compute_metrics.py` may not be bundled (its
licence), so you supply your own copy, and a Python that can run it (nncore 0.4.5, torch,
sentence-transformers, pycocoevalcap, tabulate, numpy; Java on PATH):

    .venv/bin/python bench/compare_official.py --official /tmp/official/compute_metrics.py \\
        --python /tmp/offvenv/bin/python [--predictions preds.json] [--edge-cases] [--per-source N]

What it does:
1. Predictions: the file given, else our synthetic 7,289-sample set (no crash cases, which stop the
   official run); `--edge-cases` adds our hand-made edge cases as extra sources named `edge`.
2. The official script runs in a subprocess under `--python`, unmodified: a small runner (below) executes
   its module body, then swaps a few names before it executes the script's `__main__` block:
   - `parse_args` -> our prediction file (copies differ: `--pred_path` option or positional argument);
   - the sentence model name -> the local all-MiniLM-L6-v2 directory (`--sentence-model`; offline);
   - `PTBTokenizer` -> one that accepts `verbose=` if the installed pycocoevalcap (PyPI 1.2) does not;
   - with `--captions fixed` (default) the random garbage reference of an unmatched DVC/SLC prediction
     becomes one fixed string, and ours is patched the same way, so caption metrics compare exactly;
     with `--captions random` both draw their own (official: `random.seed(--seed)`, PYTHONHASHSEED=0)
     and BLEU/METEOR/ROUGE-L/CIDEr/SentSim are compared within `--caption-tol` (2e-3). In practice only
     SentSim moves: by up to 7e-4 between official runs of different seeds, and by up to 1.1e-3 between
     the official and ours (synthetic set); the Overall/Merged Sim cells then allow 0.1 (one printed step).
3. Ours runs in this process (`etchat.evaluate.score_predictions`, default options = official).
4. It prints a per-task/per-source table, every differing value, the Overall and Merged tables (the
   official ones parsed from its metrics.log), a parser-level diff of every answer whose official
   `tvg_format`/`dvc_format` result differs from ours, and a verdict (exit code 0 when all equal).

Everything is written under `--work` (default: a temporary folder, removed unless `--work` is given).
A full run takes about 10 minutes on 2 CPU cores, almost all of it in the official DVC/SLC evaluation;
`--per-source 20` gives a 2-minute check.

Verified with the copy named in `etchat/evaluate/NOTES.md` (nusnlp/d2vlm @ 756d340,
`compute_metrics_original_etchat.py`), torch 2.13 CPU, nncore 0.4.5, sentence-transformers 6.2,
pycocoevalcap 1.2, Java 17: synthetic set plus `--edge-cases`, every metrics.json value, the Overall and
Merged tables and every parser result equal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tabulate import tabulate  # noqa: E402

from etchat.etbench import TASKS  # noqa: E402
from etchat.evaluate import tasks as T  # noqa: E402
from etchat.evaluate.captions import CAPTION_METRICS  # noqa: E402
from etchat.evaluate.parsers import ParseError, parse_dense_captions, parse_intervals  # noqa: E402
from etchat.evaluate.scorer import (  # noqa: E402
    MERGED_COLUMNS,
    OVERALL_COLUMNS,
    ScoreOptions,
    load_predictions,
    score_predictions,
)
from etchat.evaluate.similarity import SentenceEmbedder, default_model_path  # noqa: E402
from etchat.evaluate.synthetic import synthetic_predictions  # noqa: E402

FIXED_REFERENCE = "qzjxkvwpfmbhyd"  # stands in for the random 10-20 letter string on both sides

# Runs under the user's --python. It contains no code of the official script: it executes the official
# file's own statements (parsed with `ast`) and only rebinds names of its module namespace in between.
RUNNER = r'''
import argparse, ast, builtins, json, os, random, sys, traceback

cfg = json.load(open(sys.argv[1], encoding="utf-8"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
path = cfg["official"]
tree = ast.parse(open(path, encoding="utf-8").read(), path)


def is_main_guard(node):
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test)


main = [n for n in tree.body if is_main_guard(n)]
head = [n for n in tree.body if not is_main_guard(n)]
if len(main) != 1:
    sys.exit(f"{path}: expected one `if __name__ == '__main__':` block, found {len(main)}")
ns = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
exec(compile(ast.Module(head, type_ignores=[]), path, "exec"), ns)

if cfg["mode"] == "parsers":
    out = []
    for answer in cfg["answers"]:
        row = {}
        try:
            row["tvg"] = ns["tvg_format"](answer)
        except Exception as err:
            row["tvg"] = {"error": f"{type(err).__name__}: {err}"}
        row["dvc"] = list(ns["dvc_format"](answer))
        out.append(row)
    with open(cfg["out"], "w") as f:
        json.dump(out, f)
    sys.exit(0)

model_dir, device = cfg["sentence_model"], cfg["device"]
real_st = ns["sentence_transformers"]


class _SentenceTransformers:
    """Stands in for the module: its SentenceTransformer(name) loads the local copy, offline."""

    def __getattr__(self, name):
        return getattr(real_st, name)

    @staticmethod
    def SentenceTransformer(name, *args, **kwargs):
        kwargs.setdefault("device", device)
        return real_st.SentenceTransformer(model_dir, *args, **kwargs)


ns["sentence_transformers"] = _SentenceTransformers()
tokenizer_cls = ns["PTBTokenizer"]
try:
    tokenizer_cls(verbose=False)
except TypeError:  # PyPI pycocoevalcap 1.2 takes no arguments; the pinned commit accepts verbose=

    class _PTBTokenizer(tokenizer_cls):
        def __init__(self, *args, verbose=True, **kwargs):
            super().__init__(*args, **kwargs)

    ns["PTBTokenizer"] = _PTBTokenizer
ns["parse_args"] = lambda: argparse.Namespace(pred_path=cfg["predictions"], subset=False)
if cfg["fixed_reference"] is not None:
    ns["random_string"] = lambda length: cfg["fixed_reference"]
else:
    random.seed(cfg["seed"])
exec(compile(ast.Module(main[0].body, type_ignores=[]), path, "exec"), ns)
'''


# ---------------------------------------------------------------------------------------------------
# Hand-made edge cases (our own): every quirk the scorer notes name, in inputs the official survives.

_OPTS4 = ["Taking something out", "Opening something", "Closing something", "Throwing something"]
_GVQ_OPTS = ["One", "Two", "Three", "Four"]


def edge_case_predictions() -> list[dict[str, Any]]:
    """Samples of every task under source 'edge', chosen to exercise the judgment calls of NOTES.md."""
    out: list[dict[str, Any]] = []

    def add(task: str, a: str, **fields: Any) -> None:
        out.append({"task": task, "source": "edge", "idx": 100_000 + len(out), "a": a, **fields})

    for task in ("rar", "eca"):
        for a in ["B) Opening something", "(b)", "b", "B.", "Best Option: (B) Opening", "The answer is (b)",
                  "I think (B) is right but (A)", "A) Taking something out", "A person opens the door",
                  "(F) nothing", "   ", "something is opened", "Best option:", "C, closing", "d"]:  # fmt: skip
            add(task, a, o=_OPTS4, p=1)
    for a in ["E) Unable to answer", "(e)", "B) Opening something", "unable to answer", "A) Taking", "(c) wait"]:
        add("rvq", a, o=[*_OPTS4, "Unable to answer"], p=4)
    for a in ["(C) Three. The relevant event can be found in 235.5 - 241.6 seconds.", "Best option: (C) Three",
              "  C\n", "B\n", "three things happen in 235 - 240 seconds", "E. none of them, 230 - 240",
              "(A) One. 235.5 - 241.6", "", "  (c) Three, from 236 to 240", "Three"]:  # fmt: skip
        add("gvq", a, o=_GVQ_OPTS, p=2, tgt=[235.5, 241.6])
    for task in ("tvg", "epm"):
        for a in ["0 - 7", "2023-10-05", "starts at 5 seconds\nends at 10 seconds", "from 2 to 9", "9 - 1",
                  "last weekend 3\nthe end 9", "5 - 5", "The event starts at 5 seconds and ends at 10 seconds.",
                  "Start: 1.5 seconds\nEnd: 8 seconds", "It happens in 0 - 4 and 0 - 10 seconds.", "no idea",
                  "starts at 00:00:02\nends at 00:00:09", "00:05 - 00:10", "0.5 - 9.25"]:  # fmt: skip
            add(task, a, tgt=[0, 10])
    for a in ["It happens in 20 - 30 seconds.", "0 - 7", "8 - 22", "no", "from 21 to 29"]:
        add("tem", a, tgt=[[0, 10], [20, 30]])
    tal_gt = [[0, 10]] * 7 + [[100 + 20 * k, 110 + 20 * k] for k in range(6)]
    tal_float32 = ", ".join(["0 - 10"] * 5 + ["900 - 910", "920 - 930", "940 - 950", "960 - 970"])
    add("tal", tal_float32, tgt=tal_gt)  # float32 recall/precision decide the 5th decimal
    for a in ["0 - 10, 0 - 10, 0 - 10", "0 - 10, 20 - 30, 50 - 60", "nothing", "1 - 9 and 21 - 28", "0 - 7"]:
        add("tal", a, tgt=[[0, 10], [20, 30]])
    evs = [("0 - 10 and 20 - 25", [[0, 10], [20, 30]]), ("no summary", [[0, 10]]), ("2.5 - 3.5", [[2.5, 3.5]]),
           ("1000 - 1100", [[990, 1100]]), ("0.5 - 4.5", [[1.5, 3.5]])]  # fmt: skip
    for a, tgt in evs:
        add("evs", a, tgt=tgt)
    for a, tgt in [("1st highlight at 15", [[10, 20]]), ("The highlight is at 20 seconds", [[10, 20]]),
                   ("At 35.5.", [[[0, 5]], [[30, 40]]]), ("nothing", [[10, 20]]), ("-3 or so", [[-5, 0]]),
                   (".5", [[0, 1]])]:  # fmt: skip
        add("vhd", a, tgt=tgt)
    g = ["a woman is talking to the camera", "she introduces the ingredients", "she cuts the onions"]
    tgt = [[0, 56], [58, 94], [95, 120]]
    dense = [
        "0 - 56 seconds, a woman is talking to the camera. 58 - 94 seconds, she introduces the ingredients.",
        "Here are the events: 0 - 56 seconds, a woman is talking. 58 - 94 seconds, she cooks.",
        "Start time: 0s, End time: 56s, Description: a woman talks",
        "start time 0, end time 56, a woman talks",
        "At 1:30 a woman talks about cooking",
        "1:30 - 2:10 a man talks",
        "0 - 5 ok",
        "12 secs",
        "12 secs!",
        "At 0.00005 seconds a man walks in\nthen he sits",
        "At 0.0001 seconds a man walks in\nthen he sits",
        "0-5s: a man enters.\n5-10s: he sits.",
        "3 - 9 seconds, ok\nmore",
        "96 - 119 seconds, la cuisinière coupe les oignons.",
        "12 seconds, a woman talks about cooking food",
    ]
    for task in ("dvc", "slc"):
        for k, a in enumerate(dense):
            add(task, a, video=f"edge/{task}_{k}.mp4", tgt=tgt, g=g)
        add(task, "0 - 50 seconds, a woman talks.", video=f"edge/{task}_0.mp4", tgt=tgt, g=g)  # repeated video
    return out


# ---------------------------------------------------------------------------------------------------
# Running both sides


def run_official(args: argparse.Namespace, cfg: dict[str, Any], log_path: Path) -> None:
    env = dict(os.environ, PYTHONHASHSEED=str(args.hash_seed), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cfg_path = log_path.with_suffix(".cfg.json")
    cfg_path.write_text(json.dumps(cfg))
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [args.python, "-c", RUNNER, str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, env=env, check=False
        )
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        sys.exit(f"the official script failed (exit {proc.returncode}); end of {log_path}:\n{tail}")


def run_ours(records: list[dict[str, Any]], args: argparse.Namespace) -> Any:
    if args.captions == "fixed":
        T.random_caption = lambda rng: FIXED_REFERENCE  # the same stand-in as the official run gets
    options = ScoreOptions(mc_form=args.mc_form, seed=args.seed, sentence_model=str(args.sentence_model))
    return score_predictions(records, options, embedder=SentenceEmbedder(args.sentence_model))


def parse_official_tables(log_text: str) -> dict[str, dict[str, float]]:
    """The Overall and Merged tables of the official metrics.log (tabulate 'simple', header as first row)."""
    tables: dict[str, dict[str, float]] = {}
    lines = log_text.splitlines()
    for name in ("Overall", "Merged"):
        start = max(i for i, line in enumerate(lines) if line.strip() == name)
        rows = [line for line in lines[start + 1 :] if line.strip() and not set(line.strip()) <= {"-", " "}][:2]
        header, values = (re.split(r"\s{2,}", r.strip()) for r in rows)
        tables[name] = {h: float(v) for h, v in zip(header, values, strict=True)}
    return tables


# ---------------------------------------------------------------------------------------------------
# Comparing


def _same(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= tol * (1 + 1e-9)  # the relative slack absorbs the decimal rounding
    return a == b


def compare_sources(official: dict, ours: dict, caption_tol: float) -> tuple[list[list[Any]], list[list[Any]]]:
    rows, diffs = [], []
    for task in [t for t in TASKS if t in official or t in ours]:
        for src in sorted(set(official.get(task, {})) | set(ours.get(task, {}))):
            o, u = official.get(task, {}).get(src), ours.get(task, {}).get(src)
            if o is None or u is None:
                rows.append([task, src, "-", "-", "-", "missing in " + ("official" if o is None else "ours")])
                continue
            keys = list(dict.fromkeys([*o, *u]))
            bad, worst = [], 0.0
            for k in keys:
                tol = caption_tol if k in CAPTION_METRICS else 0.0
                if not _same(o.get(k), u.get(k), tol):
                    bad.append(k)
                    diffs.append([task, src, k, o.get(k), u.get(k)])
                if isinstance(o.get(k), int | float) and isinstance(u.get(k), int | float):
                    if not (math.isnan(o[k]) or math.isnan(u[k])):
                        worst = max(worst, abs(o[k] - u[k]))
            rows.append([task, src, o.get("Total"), len(keys), f"{worst:.1e}", "equal" if not bad else ", ".join(bad)])
    return rows, diffs


def compare_parsers(answers: list[str], official: list[dict[str, Any]]) -> list[list[Any]]:
    diffs = []
    for a, off in zip(answers, official, strict=True):
        try:
            ours_tvg: Any = parse_intervals(a)
        except ParseError:
            ours_tvg = "error"
        off_tvg = "error" if isinstance(off["tvg"], dict) else off["tvg"]
        if ours_tvg != off_tvg:
            diffs.append(["tvg_format", a, off_tvg, ours_tvg])
        dense = parse_dense_captions(a)
        ours_dvc = [dense.timestamps, dense.sentences] if dense else [None, None]
        if ours_dvc != off["dvc"]:
            diffs.append(["dvc_format", a, off["dvc"], ours_dvc])
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="your copy of the official compute_metrics.py")
    parser.add_argument("--python", default=sys.executable, help="a Python that can run it (default: this one)")
    parser.add_argument("--predictions", type=Path, help="predictions .json/.jsonl or directory (default: synthetic)")
    parser.add_argument("--synthetic-seed", type=int, default=0, help="seed of the synthetic set (default 0)")
    parser.add_argument("--edge-cases", action="store_true", help="add the hand-made edge cases (source 'edge')")
    parser.add_argument("--per-source", type=int, default=0, help="keep only the first N samples per source")
    parser.add_argument("--captions", choices=("fixed", "random"), default="fixed",
                        help="DVC/SLC garbage references: one fixed string on both sides (exact comparison) or "
                        "each side's own random draw (caption metrics compared within --caption-tol)")  # fmt: skip
    parser.add_argument("--caption-tol", type=float, default=2e-3, help="tolerance in --captions random mode")
    parser.add_argument("--seed", type=int, default=0, help="random.seed of the official run, our --seed")
    parser.add_argument("--hash-seed", type=int, default=0, help="PYTHONHASHSEED of the official run")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of the official run (0: default)")
    parser.add_argument("--mc-form", choices=("flat", "nested"), default="flat",
                        help="our RAR/ECA/RVQ form; 'nested' to compare with a copy that uses it")  # fmt: skip
    parser.add_argument("--sentence-model", type=Path, default=None, help="local all-MiniLM-L6-v2 directory")
    parser.add_argument("--device", default="cpu", help="sentence model device of the official run")
    parser.add_argument("--work", type=Path, default=None, help="keep inputs and outputs here")
    args = parser.parse_args()
    if not args.official.is_file():
        sys.exit(f"{args.official}: not a file; pass your copy of E.T. Bench's evaluation/compute_metrics.py")
    args.sentence_model = (args.sentence_model or default_model_path()).resolve()

    if args.predictions:
        records = load_predictions(args.predictions)[0]  # a .json/.jsonl file or a directory of them
    else:
        records = synthetic_predictions(seed=args.synthetic_seed, crash_cases=False)
    if args.edge_cases:
        records += edge_case_predictions()
    if args.per_source:
        seen: dict[tuple[str, str], int] = {}
        kept = []
        for r in records:
            key = (r["task"], r["source"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= args.per_source:
                kept.append(r)
        records = kept

    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="compare_official_")
    work = args.work or Path(tmp.name)
    (work / "official").mkdir(parents=True, exist_ok=True)
    pred_path = work / "official" / "predictions.json"
    pred_path.write_text(json.dumps(records))
    common = {"official": str(args.official.resolve()), "sentence_model": str(args.sentence_model),
              "device": args.device, "seed": args.seed}  # fmt: skip

    answers = list(dict.fromkeys(r["a"] for r in records if isinstance(r.get("a"), str)))
    start = time.perf_counter()
    parsers_out = work / "official" / "parsers.json"
    run_official(args, {**common, "mode": "parsers", "answers": answers, "out": str(parsers_out)},
                 work / "official" / "parsers.log")  # fmt: skip
    parser_diffs = compare_parsers(answers, json.loads(parsers_out.read_text()))
    print(f"parsers: {len(answers)} distinct answers through the official tvg_format/dvc_format "
          f"({time.perf_counter() - start:.0f} s), {len(parser_diffs)} differ from ours")  # fmt: skip

    start = time.perf_counter()
    ours = run_ours(records, args)
    (work / "ours").mkdir(exist_ok=True)
    (work / "ours" / "metrics.json").write_text(json.dumps(ours.to_json(), indent=4))
    print(f"ours: {len(records)} samples scored in {time.perf_counter() - start:.0f} s")

    start = time.perf_counter()
    fixed = FIXED_REFERENCE if args.captions == "fixed" else None
    run_official(args, {**common, "mode": "score", "predictions": str(pred_path), "fixed_reference": fixed},
                 work / "official" / "stdout.log")  # fmt: skip
    print(f"official: scored in {time.perf_counter() - start:.0f} s (outputs in {work / 'official'})\n")

    official = json.loads((work / "official" / "metrics.json").read_text())
    tol = args.caption_tol if args.captions == "random" else 0.0
    rows, diffs = compare_sources(official, ours.to_json(), tol)
    print(tabulate(rows, headers=["task", "source", "samples", "values", "max |diff|", "result"]))
    if diffs:
        print("\nDiffering values:\n" + tabulate(diffs, headers=["task", "source", "key", "official", "ours"]))

    table_diffs = []
    if all(t in official for t in TASKS):
        tables = parse_official_tables((work / "official" / "metrics.log").read_text())
        for name, cols, ours_table in (("Overall", [c for c, _, _ in OVERALL_COLUMNS], ours.overall),
                                       ("Merged", [c for c, _ in MERGED_COLUMNS], ours.merged)):  # fmt: skip
            print(f"\n{name}:")
            print(tabulate([["official", *[tables[name][c] for c in cols]], ["ours", *[ours_table[c] for c in cols]]],
                           headers=["", *cols]))  # fmt: skip
            for c in cols:
                sim_tol = max(tol * 100, 0.1) if "Sim" in c and tol else 0.0
                if not _same(tables[name][c], ours_table[c], sim_tol):
                    table_diffs.append([name, c, tables[name][c], ours_table[c]])
    else:
        print("\nOverall/Merged not compared: the official tables need all 12 tasks.")
    if parser_diffs:
        print("\nParser differences:\n" + tabulate(parser_diffs, headers=["parser", "answer", "official", "ours"]))

    equal = not diffs and not table_diffs and not parser_diffs
    mode = "exactly" if tol == 0 else f"exactly (caption metrics within {tol:g})"
    print(f"\nVERDICT: {'EQUAL' if equal else 'DIFFERENT'}: {len(rows)} (task, source) groups, "
          f"{len(diffs)} differing values, {len(table_diffs)} differing table cells, "
          f"{len(parser_diffs)} differing parser results; compared {mode}.")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
