"""Loading and checking the pipeline configuration against schemas/config.schema.yaml.

The Snakefile and every `etchat` command use the same checks, so a wrong key or value fails at once
with the key, the value and what is allowed, wherever it is used.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from etchat.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def deep_merge(base: dict, override: dict) -> dict:
    """Merge `override` into a copy of `base` key by key, as Snakemake merges --configfile files."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(paths: Iterable[str | os.PathLike]) -> dict:
    """Load YAML files in order, later ones overriding earlier ones, and validate the result."""
    config: dict = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
        config = deep_merge(config, data)
    validate_config(config)
    return config


def _key(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _allowed(error: jsonschema.ValidationError) -> str:
    """Say in words what the failing schema keyword allows."""
    kind, expected, schema = error.validator, error.validator_value, error.schema
    if kind == "enum":
        return "one of " + ", ".join(json.dumps(v) for v in expected)
    if kind == "type":
        return f"a value of type {expected}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bounds = []
        for word, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if word in schema:
                bounds.append(f"{sign} {schema[word]}")
        return f"a {schema.get('type', 'number')} " + " and ".join(bounds)
    if kind in ("minItems", "maxItems"):
        return f"a list with {kind[:3]}imum {expected} items"
    if kind in ("minLength", "pattern"):
        return f"a string matching {schema.get('pattern', '.+')}"
    if kind == "minProperties":
        return f"at least {expected} entries"
    return f"{kind} {json.dumps(expected)}"


def _specific(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For "null or X" keys, report what is wrong against X rather than "is not valid under any"."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        candidates = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        if not candidates:
            break
        error = max(candidates, key=lambda e: len(e.absolute_path))
    return error


def _describe(error: jsonschema.ValidationError, root: str) -> str:
    error = _specific(error)
    where = _key([root, *error.absolute_path] if root else error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"config key {where!s}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "required":
        return f"config key {where}: {error.message}; add it (see config.yaml for its meaning)"
    if error.validator == "propertyNames":
        return f"config key {where}: name {json.dumps(error.instance)} is not allowed; use {_allowed(error)}"
    value = json.dumps(error.instance)
    return f"config key {where}: value {value} is not allowed; allowed: {_allowed(error)}"


def _semantic_errors(config: dict) -> list[str]:
    """Checks a JSON-Schema cannot express (relations between keys)."""
    errors = []
    synth = config.get("synth") or {}
    duration = synth.get("duration") or {}
    if {"min", "short_max", "max"} <= duration.keys() and not duration["min"] <= duration["short_max"] <= duration[
        "max"
    ]:
        errors.append(
            f"config key synth.duration: need min <= short_max <= max, got {duration['min']}, "
            f"{duration['short_max']}, {duration['max']}"
        )
    events = synth.get("events") or {}
    if {"min", "max"} <= events.keys() and events["min"] > events["max"]:
        errors.append(f"config key synth.events: min {events['min']} is greater than max {events['max']}")
    return errors


def validate_config(config: dict, section: str | None = None) -> None:
    """Raise ConfigError listing every problem of `config` (or of one top-level `section` of it)."""
    schema = load_schema()
    if section is not None:
        schema = {"$defs": schema["$defs"], **schema["$defs"][section]}
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_describe(e, section or "") for e in sorted(validator.iter_errors(config), key=lambda e: e.path)]
    if not problems:
        problems = _semantic_errors({section: config} if section else config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def load_settings(value: str | None, section: str, config_files: Iterable[str | os.PathLike] = ()) -> dict:
    """Settings of one config section for an `etchat` command.

    `value` is inline JSON (what the Snakemake rules pass) or a YAML file holding either the section
    itself or a whole config. Without it, the section comes from `config_files` (default config.yaml).
    """
    if value is None:
        files = list(config_files) or [DEFAULT_CONFIG]
        return load_config(files)[section]
    if value.lstrip().startswith("{"):
        try:
            settings = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--settings is not valid JSON: {err}") from None
    else:
        with open(value, encoding="utf-8") as f:
            settings = yaml.safe_load(f) or {}
        settings = settings.get(section, settings)
    validate_config(settings, section=section)
    return settings


def stage_section(train: dict, stage: int) -> dict:
    """The train: section with only `stage`'s hyper-parameters: what one `etchat train` job depends on (editing
    stage 3's values must not re-run stage 1)."""
    common = {k: v for k, v in train.items() if k not in ("stage1", "stage2", "stage3")}
    return {**common, f"stage{stage}": train[f"stage{stage}"]}
