"""Collation of training samples (spec §3.6) and the modality-grouped sampler of stage 2 (spec §3.7).

The collator right-pads `input_ids` with the pad id and `labels` with `IGNORE_INDEX`, builds the attention mask from
the lengths, and passes frames (`None` for a text-only sample: the model runs its compressor on a blank frame, as
the original does with a dummy image), Q-Former queries and, in stage 3, `src`/`tgt` as lists. Nothing is
truncated: a sample longer than `model_max_length` is skipped when loaded (the original truncated the text before
splicing the frames in, which could cut a `<vid>` and crash). Samples that failed to load are left out and
listed under `skipped`; a micro-batch left empty gets one placeholder sample with no supervised token, so every
rank still runs its forward and backward (DeepSpeed reduces gradients across ranks at every micro-step).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Sampler

from etchat.data.dataset import SkippedSample
from etchat.model.constants import IGNORE_INDEX


@dataclass
class TrainingCollator:
    pad_token_id: int
    bos_token_id: int | None = None
    use_matching: bool = False

    def __call__(self, samples: Sequence[dict[str, Any] | SkippedSample]) -> dict[str, Any]:
        skipped = [s.row for s in samples if isinstance(s, SkippedSample)]
        good = [s for s in samples if not isinstance(s, SkippedSample)]
        if not good:
            good = [self._placeholder()]
        length = max(len(s["input_ids"]) for s in good)
        ids = torch.full((len(good), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(good), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(good), length), dtype=torch.long)
        for b, sample in enumerate(good):
            n = len(sample["input_ids"])
            ids[b, :n] = sample["input_ids"]
            labels[b, :n] = sample["labels"]
            mask[b, :n] = 1
        batch: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "frames": [s["frames"] for s in good],
            "queries": [s["queries"] for s in good],
            "skipped": skipped,
            "num_samples": sum(s["index"] >= 0 for s in good),
        }
        if self.use_matching:
            batch["src"] = [s.get("src") or [] for s in good]
            batch["tgt"] = [s.get("tgt") or [] for s in good]
        return batch

    def _placeholder(self) -> dict[str, Any]:
        token = self.bos_token_id if self.bos_token_id is not None else self.pad_token_id
        return {
            "index": -1,
            "input_ids": torch.tensor([token, token]),
            "labels": torch.tensor([IGNORE_INDEX, IGNORE_INDEX]),
            "frames": None,
            "queries": None,
            "src": [],
            "tgt": [],
        }


def split_to_even_chunks(indices: list[int], lengths: Sequence[int], num_chunks: int) -> list[list[int]]:
    """Split a megabatch into `num_chunks` per-rank batches of similar total length (LLaVA's greedy balance)."""
    if len(indices) % num_chunks:
        return [indices[i::num_chunks] for i in range(num_chunks)]
    per_chunk = len(indices) // num_chunks
    chunks: list[list[int]] = [[] for _ in range(num_chunks)]
    totals = [0.0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per_chunk:
            totals[shortest] = float("inf")
    return chunks


def length_grouped_indices(
    lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled megabatches of `world_size * batch_size`, each sorted by length and balanced across ranks."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = world_size * batch_size
    megabatches = [order[i : i + size] for i in range(0, len(order), size)]
    megabatches = [sorted(m, key=lambda i: lengths[i], reverse=True) for m in megabatches]
    return [[i for chunk in split_to_even_chunks(m, lengths, world_size) for i in chunk] for m in megabatches]


def modality_grouped_indices(
    modalities: Sequence[str], lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator
) -> list[int]:
    """Spec §3.7: each modality (media vs text-only) shuffled on its own into megabatches of
    `world_size * batch_size`; the incomplete last megabatch of each is dropped; the megabatches are shuffled.
    So every optimizer micro-step sees one modality on every rank."""
    groups: dict[bool, list[int]] = {True: [], False: []}
    for i, modality in enumerate(modalities):
        groups[modality != "text"].append(i)
    size = world_size * batch_size
    megabatches: list[list[int]] = []
    for members in groups.values():
        if not members:
            continue
        sub_lengths = [lengths[i] for i in members]
        for mega in length_grouped_indices(sub_lengths, batch_size, world_size, generator):
            if len(mega) == size:
                megabatches.append([members[i] for i in mega])
    order = torch.randperm(len(megabatches), generator=generator).tolist()
    return [i for k in order for i in megabatches[k]]


class ModalityGroupedSampler(Sampler[int]):
    """`modality_grouped_indices` with a generator seeded by (seed, epoch): the same order in every run, so a
    resumed run skips exactly the batches the interrupted one trained on."""

    def __init__(
        self, modalities: Sequence[str], lengths: Sequence[int], batch_size: int, world_size: int, seed: int
    ) -> None:
        self.modalities, self.lengths = list(modalities), list(lengths)
        self.batch_size, self.world_size, self.seed = batch_size, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return modality_grouped_indices(self.modalities, self.lengths, self.batch_size, self.world_size, generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        size = self.batch_size * self.world_size
        media = sum(m != "text" for m in self.modalities)
        return (media // size + (len(self.modalities) - media) // size) * size
