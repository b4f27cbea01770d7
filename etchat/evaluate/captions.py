"""Caption metrics of DVC/SLC (BLEU, METEOR, ROUGE-L, CIDEr, SentSim), batched over a whole run.

The official evaluator starts a Java PTB tokenizer once per scorer, per IoU threshold, per (task, source)
and a METEOR JVM per (task, source). Both Java tools work line by line and keep no state between lines,
so we tokenize every distinct caption of the run in ONE tokenizer call and score every distinct
(hypothesis, reference) pair in ONE METEOR process, then assemble the per-video scores exactly as the
official does (the benchmark checks the numbers against the per-call procedure). BLEU, ROUGE-L and CIDEr
are pycocoevalcap's own scorers, applied per video as in the official script.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etchat.errors import UserFacingError

log = logging.getLogger(__name__)

CAPTION_METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SentSim")

# Tokens the pycocoevalcap PTB wrapper drops after tokenizing. '-LRB-' etc. never match: the tokenizer
# runs with -lowerCase and emits '-lrb-', which therefore stays (as in the official scores).
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


@dataclass(frozen=True)
class CaptionGroup:
    """The (hypothesis, reference) caption pairs of one video at one IoU threshold, untokenized."""

    hyps: tuple[str, ...]
    refs: tuple[str, ...]


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap.bleu.bleu  # the package has no __init__.py (namespace package); its modules do exist

    return Path(pycocoevalcap.bleu.bleu.__file__).resolve().parent.parent


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise UserFacingError(
            "java was not found on PATH; DVC/SLC caption metrics need a Java runtime (8 or newer) for the PTB "
            "tokenizer and METEOR (e.g. apt-get install default-jre-headless)"
        )
    return java


def ptb_line(text: str) -> str:
    """One caption as the tokenizer input line.

    The official wrapper only turns '\\n' into a space; '\\r', '\\v' and '\\f' also end a line for Java and
    would shift every later caption of that call onto the wrong pair, so they become spaces here.
    """
    return text.replace("\n", " ").replace("\r", " ").replace("\v", " ").replace("\f", " ")


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Stanford PTB tokenization (-preserveLines -lowerCase) of all `texts` in one JVM, punctuation removed."""
    if not texts:
        return []
    java = require_java()
    jar_dir = _pycocoevalcap_dir() / "tokenizer"
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write("\n".join(ptb_line(t) for t in texts).encode())
        path = Path(f.name)
    try:
        cmd = [
            java,
            "-cp",
            "stanford-corenlp-3.4.1.jar",
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            str(path),
        ]
        proc = subprocess.run(cmd, cwd=jar_dir, capture_output=True, check=False)
    finally:
        path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"PTB tokenizer failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    lines = proc.stdout.decode().split("\n")
    if len(lines) != len(texts):  # a line terminator we do not know of: better stop than misalign
        raise RuntimeError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION) for line in lines]


class MeteorProcess:
    """One METEOR 1.5 JVM (`-stdio -l en -norm`, as pycocoevalcap runs it), fed through pipes.

    Lines are written by a thread while the caller reads answers, so thousands of segments stream
    through without a round trip each.
    """

    def __init__(self) -> None:
        java = require_java()
        cmd = [java, "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]
        self._proc = subprocess.Popen(
            cmd,
            cwd=_pycocoevalcap_dir() / "meteor",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def _exchange(self, lines: list[str], n_answers: int) -> list[str]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        error: list[BaseException] = []

        def write() -> None:
            try:
                for line in lines:
                    self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()
            except BaseException as err:  # surfaced below; the reader would otherwise block forever
                error.append(err)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        answers = []
        for _ in range(n_answers):
            answer = self._proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"METEOR stopped early (exit code {self._proc.poll()}){error and f': {error[0]}'}")
            answers.append(answer.decode().strip())
        writer.join()
        return answers

    def stats(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """The METEOR statistics line of each (hypothesis, reference) pair."""
        # pycocoevalcap cleans the hypothesis (not the references) this way before sending it.
        lines = [f"SCORE ||| {ref} ||| {hyp.replace('|||', '').replace('  ', ' ')}" for hyp, ref in pairs]
        return self._exchange(lines, len(lines))

    def scores(self, stat_groups: Sequence[Sequence[str]]) -> list[float]:
        """The aggregate METEOR score of each group of statistics lines (one EVAL line each)."""
        lines = ["EVAL ||| " + " ||| ".join(group) for group in stat_groups]
        answers = self._exchange(lines, sum(len(g) + 1 for g in stat_groups))
        out, pos = [], 0
        for group in stat_groups:
            pos += len(group)  # per-segment scores, unused
            out.append(float(answers[pos]))
            pos += 1
        return out

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> MeteorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bleu_rouge_cider(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """pycocoevalcap BLEU-1..4 ('closest'), ROUGE-L and CIDEr of one video's tokenized pairs."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [h] for i, h in enumerate(hyps)}
    gts = {i: [r] for i, r in enumerate(refs)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    try:
        cider, _ = Cider().compute_score(gts, res)
    except ValueError:
        # Every reference tokenized to nothing: the official script crashes on max() of an empty dict.
        log.warning("CIDEr undefined for a video whose references are all empty after tokenization; scored 0")
        cider = 0.0
    out = {f"Bleu_{i + 1}": b for i, b in enumerate(bleu)}
    out.update(ROUGE_L=rouge, CIDEr=cider)
    return out


class CaptionScoring:
    """Per-video caption metrics for every group of a run; empty groups score 0 (as the official).

    One tokenizer call and one METEOR process for everything; distinct pairs are scored by METEOR once
    (pairs recur across IoU thresholds); sentence embeddings are computed once per distinct string.
    `start()` tokenizes and hands METEOR to a background thread (it is a separate JVM, so it runs on
    another core while Python embeds); `finish()` computes the rest and returns the scores in group order.
    """

    def __init__(self, groups: Sequence[CaptionGroup], embedder) -> None:
        self.groups = list(groups)
        self.embedder = embedder
        self.timings: dict[str, float] = {}
        self._meteor: list[float] = []
        self._meteor_error: list[BaseException] = []
        self._thread: threading.Thread | None = None

    def start(self) -> CaptionScoring:
        clock = time.perf_counter()
        texts = list(dict.fromkeys(t for g in self.groups for t in (*g.hyps, *g.refs)))
        tokens = dict(zip(texts, ptb_tokenize(texts), strict=True))
        self._tok = [([tokens[h] for h in g.hyps], [tokens[r] for r in g.refs]) for g in self.groups]
        self.timings["ptb_tokenize"] = time.perf_counter() - clock
        self.n_texts = len(texts)
        if any(h for h, _ in self._tok):
            self._thread = threading.Thread(target=self._run_meteor, name="meteor", daemon=True)
            self._thread.start()
        return self

    def _run_meteor(self) -> None:
        clock = time.perf_counter()
        try:
            pairs = list(dict.fromkeys(p for hyps, refs in self._tok for p in zip(hyps, refs, strict=True)))
            self.n_pairs = len(pairs)
            with MeteorProcess() as proc:
                stat_of = dict(zip(pairs, proc.stats(pairs), strict=True))
                self._meteor = proc.scores([[stat_of[p] for p in zip(h, r, strict=True)] for h, r in self._tok if h])
        except BaseException as err:  # re-raised in finish()
            self._meteor_error.append(err)
        self.timings["meteor"] = time.perf_counter() - clock

    def finish(self) -> list[dict[str, float]]:
        clock = time.perf_counter()
        self.embedder.prefetch(t for hyps, refs in self._tok for t in (*hyps, *refs))
        self.timings["embed"] = time.perf_counter() - clock
        clock = time.perf_counter()
        python_scores = [bleu_rouge_cider(h, r) | {"SentSim": self.embedder.mean_pair_sim(h, r)} if h else None
                         for h, r in self._tok]  # fmt: skip
        self.timings["bleu_rouge_cider_sim"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if self._thread is not None:
            self._thread.join()
        self.timings["meteor_wait"] = time.perf_counter() - clock
        if self._meteor_error:
            raise self._meteor_error[0]
        meteor = iter(self._meteor)
        out = []
        for scores in python_scores:
            if scores is None:
                out.append(dict.fromkeys(CAPTION_METRICS, 0.0))
            else:
                scores["METEOR"] = next(meteor)
                out.append({k: scores[k] for k in CAPTION_METRICS})
        log.debug("caption metrics: %d groups, %d texts; %s", len(self.groups), self.n_texts, self.timings)
        return out


BLEU_KEYS = CAPTION_METRICS[:4]


def mean_over_videos(per_video: Sequence[dict[str, float]]) -> dict[str, np.float64]:
    """Official: np.mean over the videos of each metric.

    BLEU-1..4 are averaged as rows of one (videos x 4) array along axis 0, as the official does; that
    sums sequentially, where np.mean of a 1-D list sums pairwise, so the two can differ in the last bit.
    """
    out = {k: np.mean([v[k] for v in per_video]) for k in CAPTION_METRICS[4:]}
    bleu = np.mean([[v[k] for k in BLEU_KEYS] for v in per_video], axis=0)
    out.update({k: bleu[i] for i, k in enumerate(BLEU_KEYS)})
    return {k: out[k] for k in CAPTION_METRICS}
