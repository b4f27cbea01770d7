"""Shared fixtures: the repo root, a tiny synthetic data set, and PATH set up for subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import REPO

from etchat.config import load_config

TEST_CONFIG = REPO / ".test" / "config.yaml"

# Subprocesses (`etchat`, `snakemake`) must come from the interpreter running the tests.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def test_config() -> dict:
    """The demo config with the tiny .test overlay."""
    return load_config([REPO / "config.yaml", TEST_CONFIG])


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory, test_config) -> Path:
    """A tiny synthetic data set, generated once per test session (real ffmpeg)."""
    from etchat.data.synth.generate import generate

    out = tmp_path_factory.mktemp("data")
    generate(test_config["synth"], out, workers=2)
    return out
