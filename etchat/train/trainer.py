"""The HF Trainer as E.T. Chat trains with it (spec §4.1), on transformers 5 with DeepSpeed ZeRO-2.

- optimizer: AdamW in four groups, {decay, no decay} x {non-LoRA, LoRA}; the LoRA groups get `lora_learning_rate`
  (the original's `create_optimizer`); the cosine schedule scales every group;
- loss: the model's own (token-mean LM loss + matching loss, per micro-batch); the Trainer divides it by the
  accumulation steps and never passes `num_items_in_batch` (the model refuses it);
- logs: loss, LM loss, matching loss, learning rate, gradient norm and samples/s at every logging step, into the
  trainer state (so they survive a resume), a live TSV and tensorboard;
- checkpoints: marked complete only after every rank has saved (see `workdir`);
- records that failed to load during training are appended to a per-rank TSV;
- stage 2's modality-grouped sampler (spec §3.7) when asked.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback

from etchat.data.collate import ModalityGroupedSampler
from etchat.data.dataset import SKIP_COLUMNS, SkipRow
from etchat.train.workdir import WorkDir

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("step", "epoch", "loss", "lm_loss", "match_loss", "learning_rate", "grad_norm", "samples_per_s")


def barrier() -> None:
    """Wait for every worker when training is distributed (a no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class ETChatTrainer(Trainer):
    def __init__(
        self,
        *args: Any,
        lora_learning_rate: float | None = None,
        group_by_modality: bool = False,
        global_batch: int = 1,
        workdir: WorkDir | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lora_learning_rate = lora_learning_rate
        self.group_by_modality = group_by_modality
        self.global_batch = global_batch
        self.workdir = workdir
        self._parts = torch.zeros(4, dtype=torch.float64)  # lm sum, lm count, match sum, match count
        self._last_log: tuple[float, int] | None = None
        self.add_callback(_LogClock(self))

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: list[dict[str, Any]] = []
        for lora in (False, True):
            for use_decay in (True, False):
                params = [
                    p
                    for n, p in opt_model.named_parameters()
                    if p.requires_grad and (n in decay) == use_decay and ("lora_" in n) == lora
                ]
                if not params:
                    continue
                group: dict[str, Any] = {"params": params, "weight_decay": self.args.weight_decay if use_decay else 0.0}
                if lora and self.lora_learning_rate is not None:
                    group["lr"] = self.lora_learning_rate
                groups.append(group)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    # ------------------------------------------------------------------ sampler
    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.group_by_modality:
            return ModalityGroupedSampler(
                dataset.modalities,
                dataset.lengths,
                self.args.per_device_train_batch_size,
                self.args.world_size,
                self.args.seed,
            )
        return super()._get_train_sampler(dataset)

    # ------------------------------------------------------------------ loss
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        skipped = inputs.pop("skipped", [])
        inputs.pop("num_samples", None)
        if skipped:
            self._record_skipped(skipped)
        outputs = model(**inputs)
        # Summed on the loss's device (no host sync per micro-step), reduced across workers when logged.
        if self._parts.device != outputs.loss.device:
            self._parts = self._parts.to(outputs.loss.device)
        for slot, part in ((0, outputs.lm_loss), (2, outputs.match_loss)):
            if part is not None:
                self._parts[slot] += part.detach().double()
                self._parts[slot + 1] += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _record_skipped(self, rows: list[SkipRow]) -> None:
        if self.workdir is None:
            return
        path = self.workdir.skipped_file(self.args.process_index)
        new = not path.is_file()
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t")
            if new:
                writer.writerow(SKIP_COLUMNS)
            for r in rows:
                writer.writerow([getattr(r, c) for c in SKIP_COLUMNS])
        for r in rows:
            log.warning("skipped record %d (%s): %s", r.index, r.id, r.reason)

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            parts = self._parts.clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(parts)  # sums and counts of every worker (gloo and nccl both reduce float64)
            self._parts.zero_()
            lm_sum, lm_count, match_sum, match_count = parts.tolist()
            logs["lm_loss"] = lm_sum / lm_count if lm_count else float("nan")
            logs["match_loss"] = match_sum / match_count if match_count else float("nan")
            now, step = time.perf_counter(), self.state.global_step
            if self._last_log is not None and step > self._last_log[1]:
                logs["samples_per_s"] = (step - self._last_log[1]) * self.global_batch / (now - self._last_log[0])
            self._last_log = (now, step)
        super().log(logs, start_time)


class _LogClock(TrainerCallback):
    """Starts the samples/s clock once the (possibly resumed) state is loaded."""

    def __init__(self, trainer: ETChatTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._last_log = (time.perf_counter(), state.global_step)


class MetricsCallback(TrainerCallback):
    """A live TSV row and tensorboard scalars per logging step (rank 0), and a log line."""

    def __init__(self, workdir: WorkDir, stage: int) -> None:
        self.workdir = workdir
        self.stage = stage
        self.writer = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run logged after its last checkpoint (they are logged again).
            self.writer = SummaryWriter(str(self.workdir.tensorboard), purge_step=state.global_step or None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, **logs}
        new = not self.workdir.live_metrics.is_file()
        with open(self.workdir.live_metrics, "a", encoding="utf-8") as f:
            if new:
                f.write("\t".join(METRIC_COLUMNS) + "\n")
            f.write(_metrics_line(row) + "\n")
        if self.writer is not None:
            for key in METRIC_COLUMNS[2:]:
                value = row.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"stage{self.stage}/{key}", value, state.global_step)
            self.writer.flush()
        log.info(
            "stage %d step %d/%d: loss %.4f (lm %.4f, match %.4f), lr %.3g, %.1f samples/s",
            self.stage,
            state.global_step,
            state.max_steps,
            logs["loss"],
            logs.get("lm_loss", float("nan")),
            logs.get("match_loss", float("nan")),
            logs.get("learning_rate", float("nan")),
            logs.get("samples_per_s", float("nan")),
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()


class CompleteCheckpointCallback(TrainerCallback):
    """After each save: wait for every rank, then mark the checkpoint complete and rotate old ones (rank 0)."""

    def __init__(self, workdir: WorkDir, keep: int | None) -> None:
        self.workdir = workdir
        self.keep = keep

    def on_save(self, args, state, control, **kwargs):
        barrier()
        if state.is_world_process_zero:
            path = self.workdir.mark_complete(state.global_step, self.keep)
            log.info("checkpoint %s complete", path)
        barrier()


def metrics_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step (the last entry wins where a resumed run logged a step again)."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            rows[int(entry["step"])] = {c: entry.get(c) for c in METRIC_COLUMNS}
    return [rows[k] for k in sorted(rows)]


def write_metrics(rows: list[dict[str, Any]], path: str | Path) -> None:
    from etchat.io import write_text_atomic

    lines = ["\t".join(METRIC_COLUMNS)] + [_metrics_line(r) for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _metrics_line(row: dict[str, Any]) -> str:
    return "\t".join(_fmt(row.get(c)) for c in METRIC_COLUMNS)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)
