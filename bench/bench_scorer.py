"""Scorer benchmark: our batched scorer against the official scoring *procedure*, per task, same numbers.

The official script cannot be bundled, so the baseline is its procedure built from our functions and
pycocoevalcap's own classes: per (task, source) one METEOR JVM; per IoU threshold one PTB tokenizer JVM
per caption scorer (5); per video its own sentence-model calls; every multiple-choice similarity encodes
its two strings on the spot. Ours: one tokenizer call, one METEOR process running beside Python, each
distinct string embedded once in length buckets. Both must give identical metrics.json content, and the
full-set run must equal the per-task runs (scores never depend on the other tasks present).

    .venv/bin/python bench/bench_scorer.py [--tasks tvg,dvc] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.meteor.meteor import Meteor  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: E402
from tabulate import tabulate  # noqa: E402

from etchat.etbench import TASKS  # noqa: E402
from etchat.evaluate.captions import CAPTION_METRICS, CaptionGroup, ptb_line  # noqa: E402
from etchat.evaluate.scorer import ScoreOptions, score_predictions  # noqa: E402
from etchat.evaluate.similarity import SentenceEmbedder  # noqa: E402
from etchat.evaluate.synthetic import synthetic_predictions  # noqa: E402


class _Quiet:
    """pycocoevalcap's PTBTokenizer lets Java print a line per call on stderr; silence fd 2 meanwhile."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)


class OfficialProcedureCaptions:
    """The caption part of the official procedure, source by source (computed in `finish`)."""

    def __init__(self, plans: list[list[list[CaptionGroup]]], embedder: SentenceEmbedder) -> None:
        self.plans, self.embedder = plans, embedder
        self.jvm_starts = 0

    def finish(self) -> list[list[list[dict[str, float]]]]:
        return [self._source(plan) for plan in self.plans]

    def _source(self, plan: list[list[CaptionGroup]]) -> list[list[dict[str, float]]]:
        meteor = Meteor()  # one METEOR JVM per evaluator, i.e. per (task, source)
        self.jvm_starts += 1
        try:
            return [self._threshold(groups, meteor) for groups in plan]
        finally:
            del meteor  # pycocoevalcap stops its JVM in __del__

    def _threshold(self, groups: list[CaptionGroup], meteor: Meteor) -> list[dict[str, float]]:
        caps, keys = {}, []
        for v, g in enumerate(groups):
            for k, (h, r) in enumerate(zip(g.hyps, g.refs, strict=True)):
                caps[f"{v}.{k}.h"] = [{"caption": ptb_line(h)}]
                caps[f"{v}.{k}.r"] = [{"caption": ptb_line(r)}]
            keys.append([f"{v}.{k}" for k in range(len(g.hyps))])
        out = [dict.fromkeys(CAPTION_METRICS, 0.0) for _ in groups]
        scorers = [("bleu", Bleu(4)), ("meteor", meteor), ("rouge", Rouge()), ("cider", Cider()), ("sim", None)]
        for name, scorer in scorers:
            if not caps:
                break
            with _Quiet():
                tok = PTBTokenizer().tokenize(caps)  # a tokenizer JVM per scorer, as the official evaluator
            self.jvm_starts += 1
            for v, ks in enumerate(keys):
                if not ks:
                    continue
                res = {k: tok[f"{k}.h"] for k in ks}
                gts = {k: tok[f"{k}.r"] for k in ks}
                if name == "bleu":
                    bleu = scorer.compute_score(gts, res, verbose=0)[0]
                    out[v].update({f"Bleu_{i + 1}": b for i, b in enumerate(bleu)})
                elif name == "meteor":
                    out[v]["METEOR"] = scorer.compute_score(gts, res)[0]
                elif name == "rouge":
                    out[v]["ROUGE_L"] = scorer.compute_score(gts, res)[0]
                elif name == "cider":
                    out[v]["CIDEr"] = scorer.compute_score(gts, res)[0]
                else:
                    hyps, refs = [res[k][0] for k in ks], [gts[k][0] for k in ks]
                    out[v]["SentSim"] = self.embedder.mean_pair_sim(hyps, refs)  # per-video model calls
        return out


def _embedder(model, cache: bool) -> SentenceEmbedder:
    emb = SentenceEmbedder(cache=cache)
    emb._model = model  # share the loaded model; its load time is reported once
    return emb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task codes (default: all 12)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic prediction set seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tasks = [t for t in args.tasks.split(",") if t]

    records = synthetic_predictions(seed=args.seed)
    start = time.perf_counter()
    model = SentenceEmbedder().model
    load_s = time.perf_counter() - start
    print(f"synthetic predictions: {len(records)} samples; sentence model load {load_s:.1f} s (not in the times below)")
    print(f"machine: {os.cpu_count()} CPUs visible; torch encodes single-threaded in both (canonical embeddings)\n")

    rows, ours_by_task, all_identical = [], {}, True
    for task in tasks:
        subset = [r for r in records if r["task"] == task]
        start = time.perf_counter()
        base_emb = _embedder(model, cache=False)
        holder: dict[str, OfficialProcedureCaptions] = {}

        def baseline_captions(plans, emb, _holder=holder):
            _holder["job"] = OfficialProcedureCaptions(plans, emb)
            return _holder["job"]

        baseline = score_predictions(subset, ScoreOptions(), embedder=base_emb, caption_scorer=baseline_captions)
        base_s = time.perf_counter() - start
        start = time.perf_counter()
        ours_emb = _embedder(model, cache=True)
        ours = score_predictions(subset, ScoreOptions(), embedder=ours_emb)
        ours_s = time.perf_counter() - start
        identical = json.dumps(baseline.to_json()) == json.dumps(ours.to_json())
        all_identical &= identical
        ours_by_task[task] = ours.to_json()[task]
        jvms = holder["job"].jvm_starts if holder else 0
        rows.append([task, len(subset), f"{base_s:.2f}", f"{ours_s:.2f}", f"{base_s / ours_s:.1f}x", jvms,
                     2 if jvms else 0, "yes" if identical else "NO"])  # fmt: skip
        print(f"{task}: baseline {base_s:.2f} s, ours {ours_s:.2f} s, identical={identical}", flush=True)

    base_total = sum(float(r[2]) for r in rows)
    ours_total = sum(float(r[3]) for r in rows)
    subset = [r for r in records if r["task"] in tasks]
    start = time.perf_counter()
    full = score_predictions(subset, ScoreOptions(), embedder=_embedder(model, cache=True))
    full_s = time.perf_counter() - start
    same_as_parts = json.dumps(full.to_json(), sort_keys=True) == json.dumps(ours_by_task, sort_keys=True)
    header = ["task", "samples", "baseline s", "ours s", "speed-up", "baseline JVMs", "ours JVMs", "identical"]
    # ours: one PTB tokenizer and one METEOR JVM per run, whatever the number of sources
    print()
    print(tabulate(rows + [["sum", len(subset), f"{base_total:.2f}", f"{ours_total:.2f}",
                            f"{base_total / ours_total:.1f}x", "", "", ""]], headers=header))  # fmt: skip
    print(f"\nours, all tasks in one run: {full_s:.2f} s ({base_total / full_s:.1f}x faster than the baseline sum); "
          f"identical to the per-task runs: {same_as_parts}")  # fmt: skip
    print(f"ours, stage times of the one run: {', '.join(f'{k} {v:.2f} s' for k, v in full.timings.items())}")
    ok = all_identical and same_as_parts
    print("\nALL NUMBERS IDENTICAL" if ok else "\nMISMATCH: see the 'identical' column")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
