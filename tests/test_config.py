"""The config schema: the demo config and presets are valid; wrong keys and values fail clearly."""

from __future__ import annotations

import copy

import pytest
import yaml

from etchat.config import deep_merge, load_config, load_settings, validate_config
from etchat.errors import ConfigError


def test_demo_config_is_valid(repo):
    config = load_config([repo / "config.yaml"])
    assert config["preset"] == "demo"
    assert config["synth"]["enabled"] is True


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["compress"].__setitem__("fps", "fast"), ["compress.fps", '"fast"', "type number"]),
        (
            lambda c: c["compress"].__setitem__("on_error", "ignore"),
            ["compress.on_error", '"ignore"', '"skip", "fail"'],
        ),
        (lambda c: c["compress"].__setitem__("shards", 0), ["compress.shards", "0", ">= 1"]),
        (lambda c: c["compress"].__setitem__("fsp", 3), ["compress", "unknown key(s) fsp", "allowed keys", "fps"]),
        (lambda c: c["synth"]["counts"].__setitem__("webvid_videos", -1), ["synth.counts.webvid_videos", "-1"]),
        (lambda c: c["annotations"]["files"]["stage1"].__setitem__("format", "coco"), ["stage1.format", '"coco"']),
        (lambda c: c["synth"]["duration"].__setitem__("min", 60), ["synth.duration", "min <= short_max <= max"]),
        (lambda c: c["synth"].pop("seed"), ["synth", "'seed' is a required property"]),
    ],
)
def test_wrong_key_or_value_names_key_value_and_allowed(repo, mutate, expected):
    config = load_config([repo / "config.yaml"])
    broken = copy.deepcopy(config)
    mutate(broken)
    with pytest.raises(ConfigError) as info:
        validate_config(broken)
    for fragment in expected:
        assert fragment in str(info.value)


def test_every_error_is_reported_at_once(repo):
    config = load_config([repo / "config.yaml"])
    config["compress"]["fps"] = "x"
    config["compress"]["crf"] = 99
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert "compress.fps" in str(info.value) and "compress.crf" in str(info.value)


def test_presets_overlay_and_stay_valid(repo, tmp_path):
    overlay = tmp_path / "preset.yaml"
    overlay.write_text(yaml.safe_dump({"compress": {"shards": 16}, "synth": {"enabled": False}}))
    config = load_config([repo / "config.yaml", overlay])
    assert config["compress"]["shards"] == 16
    assert config["compress"]["fps"] == 3  # untouched keys keep the demo value
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


def test_section_settings_are_checked(repo):
    synth = load_settings(None, "synth", [repo / "config.yaml"])
    assert synth["seed"] == 0
    with pytest.raises(ConfigError, match="synth.fps"):
        load_settings('{"fps": "thirty"}', "synth")


@pytest.mark.parametrize("preset", ["paper", "from-stage2", "released"])
def test_presets_are_valid_overlays(repo, preset):
    config = load_config([repo / "config.yaml", repo / f"presets/{preset}.yaml"])
    assert config["preset"] == preset and config["synth"]["enabled"] is False
    assert config["video_sets"]["etbench"] and config["annotations"]["files"]["etbench_vid"]
