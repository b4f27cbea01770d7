"""The batched Java tools and canonical embeddings give exactly what the per-call official procedure gives."""

from __future__ import annotations

import numpy as np
import torch

from etchat.evaluate.captions import (
    CAPTION_METRICS,
    CaptionGroup,
    CaptionScoring,
    MeteorProcess,
    mean_over_videos,
    ptb_tokenize,
)
from etchat.evaluate.similarity import SentenceEmbedder

TRICKY = [
    "A man walks.",
    "",
    "   ",
    'She said "hi" (loudly)!',
    "it's the chef's knife -- isn't it?",
    "cut 1/2 of the onion; then stir...",
    "-LRB- literal -RRB- and {braces} [brackets]",
    "caf  au lait",
    "x",
    "tabs\tand\x1cseparators",
    "Step 3: add 2.5 cups of water, e.g. slowly",
]


def test_ptb_batched_equals_library_per_call() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ours = ptb_tokenize(TRICKY + TRICKY[::-1])
    library = []
    for chunk in (TRICKY[:4], TRICKY[4:], TRICKY[::-1]):  # three JVMs, different neighbours
        out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(chunk)})
        library += [out[i][0] for i in range(len(chunk))]
    assert ours == library
    assert ours[3] == "she said hi -lrb- loudly -rrb-"  # '-lrb-' survives: the filter lists '-LRB-'


def test_ptb_line_breaks_inside_captions_do_not_shift_lines() -> None:
    assert ptb_tokenize(["a\rb", "c\fd", "e\nf", "g\vh", "last"]) == ["a b", "c d", "e f", "g h", "last"]


def test_meteor_and_caption_scores_match_pycocoevalcap_per_group(embedder: SentenceEmbedder) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.meteor.meteor import Meteor

    groups = [
        CaptionGroup(("a man cuts the onion.", "he stirs the pan"), ("a man cuts an onion", "qwertyuiopasd")),
        CaptionGroup((), ()),
        CaptionGroup(("she pours some water",), ("the woman pours water into the bowl",)),
        CaptionGroup(("a man cuts the onion.",), ("a man cuts an onion",)),  # a pair seen before
    ]
    ours = CaptionScoring(groups, embedder).start().finish()
    assert ours[1] == dict.fromkeys(ours[1], 0.0)
    meteor = Meteor()  # the official: one METEOR JVM per evaluator, one EVAL line per video
    try:
        for group, scores in zip(groups, ours, strict=True):
            if not group.hyps:
                continue
            tok = ptb_tokenize([*group.hyps, *group.refs])
            n = len(group.hyps)
            res = {i: [h] for i, h in enumerate(tok[:n])}
            gts = {i: [r] for i, r in enumerate(tok[n:])}
            assert scores["METEOR"] == meteor.compute_score(gts, res)[0]
            assert [scores[f"Bleu_{k}"] for k in range(1, 5)] == Bleu(4).compute_score(gts, res, verbose=0)[0]
    finally:
        del meteor  # pycocoevalcap stops its JVM in __del__


def test_meteor_process_is_stateless_across_lines() -> None:
    pairs = [("a man walks", "a man is walking"), ("she cooks", "someone cooks food"), ("x", "")]
    with MeteorProcess() as proc:
        first = proc.stats(pairs)
        again = proc.stats(pairs[::-1])[::-1]
        assert first == again
        assert proc.scores([first[:2], first[2:]])[1] == 0.0


def test_bucketed_embeddings_are_bitwise_the_alone_embeddings(embedder: SentenceEmbedder) -> None:
    words = "a man woman walks cooks the onion pan into cut adds salt water stir bowl knife".split()
    texts = [" ".join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 9)) for i in range(90)]
    fresh = SentenceEmbedder(embedder.model_path)
    fresh._model = embedder.model
    fresh.prefetch(texts)  # buckets of up to 64 same-length sentences
    batched = fresh.embed(texts)
    model = embedder.model
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            alone = torch.stack([model.encode([t], convert_to_tensor=True)[0] for t in texts[::9]])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(batched[::9], alone)


def test_uncached_embedder_gives_the_same_similarities(embedder: SentenceEmbedder) -> None:
    plain = SentenceEmbedder(embedder.model_path, cache=False)
    plain._model = embedder.model
    a, b = "b) opening something", "(B) Opening something"
    assert plain.sim(a, b) == embedder.sim(a, b)
    hyps, refs = ["a man cuts the onion", "he stirs"], ["a man cuts an onion", "qwertyuiop"]
    assert plain.mean_pair_sim(hyps, refs) == embedder.mean_pair_sim(hyps, refs)
    assert 0.5 < embedder.sim("a man cuts an onion", "a man cuts the onion") <= 1.0 + 1e-6


def test_sentsim_is_a_python_mean_of_the_float32_dot_products(embedder: SentenceEmbedder) -> None:
    # Official `compute_score`: each diagonal dot product as a Python float, then sum / len in float64.
    hyps = ["a man cuts the onion", "he stirs", "she pours water", "a child throws a box"]
    refs = ["a man cuts an onion", "qwertyuiop", "the woman pours some water", "a kid holds a box"]
    diag = torch.mm(embedder.embed(refs), embedder.embed(hyps).T).diag()
    assert embedder.mean_pair_sim(hyps, refs) == sum(d.item() for d in diag) / len(diag)


def test_bleu_is_averaged_over_videos_as_one_array_along_axis_0() -> None:
    # The official averages BLEU as np.mean(rows, axis=0), which sums sequentially; np.mean of a 1-D list
    # sums pairwise and differs in the last bit for these nine values.
    vals = [0.8102172359965896, 0.9021659504395827, 0.3101475693193326, 0.7298317482601286, 0.8988382879679935,
            0.6839839319154413, 0.47214271545271336, 0.1007012080683658, 0.4341718354537837]  # fmt: skip
    per_video = [dict.fromkeys(CAPTION_METRICS, v) for v in vals]
    means = mean_over_videos(per_video)
    assert means["Bleu_1"] == means["Bleu_4"] == np.mean([[v] * 4 for v in vals], axis=0)[0]
    assert means["METEOR"] == means["SentSim"] == np.mean(vals) != means["Bleu_1"]
