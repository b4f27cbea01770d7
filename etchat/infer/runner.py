"""The shard runner: answer every sample of a shard that has no valid line yet, in batches, appending as it goes.

Videos of the next batches are decoded by a thread pool while the model answers the current one. A sample whose
video is missing or unreadable gets an error line and the others go on; a batch that fails is retried one sample
at a time, so one bad sample never takes the others down. Error lines are retried on the next run.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from etchat.errors import DataError

from .engine import Engine, Prepared
from .prompts import is_multiple_choice
from .samples import InferSample
from .store import AnswerLog

log = logging.getLogger(__name__)

# Consecutive generation failures after which the shard stops (a broken device, not a bad sample).
MAX_CONSECUTIVE_FAILURES = 5


@dataclass
class ShardSummary:
    benchmark: str
    shard: int
    shards: int
    log: str
    samples: int = 0
    reused: int = 0
    answered: int = 0
    errors: int = 0
    stale_lines: int = 0
    capped: int = 0  # samples whose frames were subsampled (frame cap or context guard)
    truncated: int = 0  # answers cut by the context limit
    seconds: float = 0.0
    generate_seconds: float = 0.0
    samples_per_s: float | None = None
    fingerprint: str = ""
    checkpoint: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1
    device: str = ""
    error_samples: list[dict[str, Any]] = field(default_factory=list)
    capped_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_batches(samples: Sequence[InferSample], batch_size: int) -> list[list[InferSample]]:
    """Batches of one kind (multiple-choice or not); with batching, similar durations go together (less padding)."""
    groups: dict[bool, list[InferSample]] = {}
    for sample in samples:
        groups.setdefault(is_multiple_choice(sample.task), []).append(sample)
    batches = []
    for group in groups.values():
        if batch_size > 1:
            group = sorted(group, key=lambda s: (s.duration or 0.0, s.index))
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


class ShardRunner:
    def __init__(self, engine: Engine, benchmark: str, log_path: str | os.PathLike) -> None:
        self.engine = engine
        self.benchmark = benchmark
        self.log_path = Path(log_path)
        # Take over valid answers from the other shard logs (`*-of-*.jsonl`) in the same folder (see `_adopt`).
        self.adopt = True
        # Videos the compression step reported as failed (path -> reason), to say why a video is missing.
        self.failed_videos: dict[str, str] = {}
        self._failures = 0

    def run(self, samples: Sequence[InferSample], shard: int = 1, shards: int = 1) -> ShardSummary:
        """Answer `samples` (this shard's); returns the summary (the log holds the answers)."""
        engine, settings = self.engine, self.engine.settings
        start = time.perf_counter()
        summary = ShardSummary(
            benchmark=self.benchmark,
            shard=shard,
            shards=shards,
            log=str(self.log_path),
            samples=len(samples),
            fingerprint=engine.fingerprint,
            checkpoint={"path": str(engine.checkpoint), "digest": engine.digest},
            settings=engine.answer_settings,
            batch_size=settings.batch_size,
            device=str(engine.device),
        )
        with AnswerLog(self.log_path) as answers:
            digests = {s.key: s.digest for s in samples}
            state = answers.state(engine.fingerprint, digests)
            adopted = self._adopt(state.answers, digests)
            if adopted:
                answers.append(adopted)
                state.answers.update((line["key"], line) for line in adopted)
                log.info("%d answers taken over from other shard logs in %s", len(adopted), self.log_path.parent)
            summary.stale_lines = state.stale
            summary.reused = len(state.answers)
            pending = [s for s in samples if s.key not in state.answers]
            log.info(
                "%s shard %d of %d: %d samples, %d answered already, %d to do (%d earlier errors retried, "
                "%d stale lines ignored)",
                self.benchmark,
                shard,
                shards,
                len(samples),
                summary.reused,
                len(pending),
                len(state.errors),
                state.stale,
            )
            for line in state.answers.values():
                self._count(summary, line)
            progress = tqdm(
                total=len(pending), desc=f"{self.benchmark} {shard}-of-{shards}", unit="sample", disable=None
            )
            done_before = 0
            for lines, seconds in self._answer_all(pending, settings.batch_size, settings.loader_workers):
                answers.append(lines)
                summary.generate_seconds += seconds
                for line in lines:
                    self._count(summary, line)
                    if line["status"] == "ok":
                        summary.answered += 1
                progress.update(len(lines))
                done_before += len(lines)
                if done_before % 50 < len(lines) or done_before == len(pending):
                    log.info("%d of %d samples done (%d errors)", done_before, len(pending), summary.errors)
            progress.close()
        summary.seconds = round(time.perf_counter() - start, 3)
        summary.generate_seconds = round(summary.generate_seconds, 3)
        if summary.answered and summary.generate_seconds > 0:
            summary.samples_per_s = round(summary.answered / summary.generate_seconds, 4)
        log.info(
            "%s shard %d of %d: %d answered now, %d reused, %d errors, %d capped, %d truncated, %.1f s",
            self.benchmark,
            shard,
            shards,
            summary.answered,
            summary.reused,
            summary.errors,
            summary.capped,
            summary.truncated,
            summary.seconds,
        )
        return summary

    def _adopt(self, have: dict[str, dict[str, Any]], digests: dict[str, str]) -> list[dict[str, Any]]:
        """Valid answers for this shard's samples found in the other logs of the folder (e.g. written with another
        shard count), so that changing the number of shards recomputes nothing."""
        if not self.adopt:
            return []
        found: dict[str, dict[str, Any]] = {}
        for other in sorted(self.log_path.parent.glob("*-of-*.jsonl")):
            if other == self.log_path:
                continue
            try:  # read only: another shard may be appending to it right now
                answers = AnswerLog(other).state(self.engine.fingerprint, digests, repair=False).answers
            except DataError as err:
                log.warning("not taking answers from %s: %s", other, err)
                continue
            found.update((key, line) for key, line in answers.items() if key not in have)
        return [found[key] for key in digests if key in found]

    @staticmethod
    def _count(summary: ShardSummary, line: dict[str, Any]) -> None:
        if line["status"] != "ok":
            summary.errors += 1
            summary.error_samples.append({k: line.get(k) for k in ("key", "index", "video", "task", "stage", "error")})
            return
        if line.get("capped_by"):
            summary.capped += 1
            summary.capped_samples.append(line["key"])
        summary.truncated += bool(line.get("truncated"))

    # ------------------------------------------------------------------ batches with prefetched videos
    def _answer_all(
        self, pending: Sequence[InferSample], batch_size: int, workers: int
    ) -> Iterator[tuple[list[dict[str, Any]], float]]:
        batches = plan_batches(pending, batch_size)
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="video") as pool:
            queue: deque[list[Future]] = deque()
            upcoming = iter(batches)
            for batch in upcoming:  # two batches in flight: the one answered and the next
                queue.append([pool.submit(self._prepare, s) for s in batch])
                if len(queue) == 2:
                    break
            while queue:
                futures = queue.popleft()
                following = next(upcoming, None)
                if following is not None:
                    queue.append([pool.submit(self._prepare, s) for s in following])
                ready: list[Prepared] = []
                lines: list[dict[str, Any]] = []
                for future in futures:
                    result = future.result()
                    if isinstance(result, Prepared):
                        ready.append(result)
                    else:
                        lines.append(result)
                start = time.perf_counter()
                if ready:
                    lines += self._generate(ready)
                yield lines, time.perf_counter() - start

    def _prepare(self, sample: InferSample) -> Prepared | dict[str, Any]:
        try:
            return self.engine.prepare(sample)
        except Exception as err:  # any per-sample failure (missing, corrupt, too long) becomes its error line
            message = str(err) or type(err).__name__
            if sample.video in self.failed_videos:
                message += f" (compression failed: {self.failed_videos[sample.video]})"
            log.warning("sample %s (%s): %s", sample.key, sample.video, message)
            return self.engine.error_line(sample, "video", message)

    def _generate(self, batch: list[Prepared]) -> list[dict[str, Any]]:
        try:
            lines = self.engine.generate(batch)
            self._failures = 0
            return lines
        except Exception as err:
            if isinstance(err, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            if len(batch) > 1:
                log.warning("a batch of %d failed (%s); answering its samples one by one", len(batch), err)
                return [line for p in batch for line in self._generate([p])]
            self._failures += 1
            if self._failures >= MAX_CONSECUTIVE_FAILURES:
                raise DataError(
                    f"generation failed on {self._failures} samples in a row, last on {batch[0].sample.key}: {err}; "
                    f"stopping (answers so far are kept in {self.log_path})"
                ) from err
            log.exception("sample %s: generation failed", batch[0].sample.key)
            return [self.engine.error_line(batch[0].sample, "generate", err)]
