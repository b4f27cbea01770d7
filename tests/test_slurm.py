"""`snakemake --profile slurm`: the paper preset's resources per rule (dry run), and the demo DAG run through the
profile on a real single-node SLURM (scripts/local_slurm.sh: slurmctld, slurmd, slurmdbd, fake GPUs), checked job by
job against what its rule asked for and file by file against a local run of the same config."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from safetensors.torch import load_file

from etchat.config import deep_merge, load_config

PROFILE = REPO / "slurm" / "config.yaml"
CLUSTER_SCRIPT = REPO / "scripts" / "local_slurm.sh"
GPU_RULES = ("train_stage", "infer_shard")

# The test cluster (scripts/local_slurm.sh settings) and what the copy of the profile says about it.
CLUSTER = {"partition": "debug", "account": "etchat", "gpu_type": "fake", "gpus": 2}
# The tiny demo, with GPUs asked for: 2 per training stage (torchrun starts 2 workers), 1 per inference shard. The
# node's GPUs are fake, so the code inside the jobs finds no CUDA and runs on CPU, as the local run does.
GPU_OVERLAY = {"train": {"gpus": 2}, "infer": {"gpu": 1}}


def snakemake(*args: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def job_blocks(output: str) -> list[dict]:
    """The jobs Snakemake printed (`rule NAME:` blocks): rule, wildcards, threads and resources of each."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        head = re.match(r"(local)?rule (\w+):\n", block)
        if not head:
            continue
        job = {"rule": head.group(2), "local": bool(head.group(1)), "threads": 1, "resources": {}, "wildcards": ""}
        for line in block.splitlines()[1:]:
            key, _, value = line.strip().partition(": ")
            if not line.startswith("    "):
                break
            if key == "threads":
                job["threads"] = int(value)
            elif key == "wildcards":
                job["wildcards"] = value
            elif key == "resources":
                job["resources"] = dict(item.split("=", 1) for item in value.split(", "))
        jobs.append(job)
    return jobs


def placeholders(workdir: Path, config: dict) -> None:
    """Empty stand-ins for the real data and weights a preset names, so that its DAG builds."""
    for entry in filter(None, config["annotations"]["files"].values()):
        (workdir / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        (workdir / entry["path"]).write_text("[]")
        for root in ("video_root", "image_root"):
            if root in entry:
                (workdir / entry[root]).mkdir(parents=True, exist_ok=True)
    for entry in filter(None, config["video_sets"].values()):
        (workdir / entry["videos"]).mkdir(parents=True, exist_ok=True)
    model = config["model"]
    (workdir / model["llm_dir"]).mkdir(parents=True, exist_ok=True)
    for key in ("eva_vit", "qformer"):
        (workdir / model[key]).parent.mkdir(parents=True, exist_ok=True)
        (workdir / model[key]).write_bytes(b"")


def test_paper_preset_through_the_profile_asks_each_rule_its_resources(tmp_path):
    """The literal command from the repo root, with the paper preset, in a work directory of placeholder inputs."""
    config = load_config([REPO / "config.yaml", REPO / "presets/paper.yaml"])
    placeholders(tmp_path, config)
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    profile = yaml.safe_load(PROFILE.read_text())
    # A cluster run caps no job's threads; a dry run caps them at --cores (1 by default).
    dry = snakemake(
        "-n", "--profile", "slurm", "--configfile", "presets/paper.yaml", "--directory", str(tmp_path),
        "--cores", "256", cwd=REPO, timeout=300,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Using profile slurm" in dry.stdout + dry.stderr
    jobs = [job for job in job_blocks(dry.stdout + dry.stderr) if not job["local"] and job["rule"] != "all"]
    counts = Counter(job["rule"] for job in jobs)
    assert counts == {
        "validate_annotations": 6, "list_videos": 5, "compress_shard": 10, "compress_summary": 5, "compress_table": 1,
        "train_stage": 3, "infer_shard": 10, "infer_merge": 2, "score_etbench": 1, "score_charades": 1, "report": 1,
    }  # fmt: skip
    gpu_rule = profile["set-resources"]["train_stage"]
    assert profile["set-resources"]["infer_shard"] == gpu_rule
    for job in jobs:
        res, rule = job["resources"], job["rule"]
        where = f"{rule} {job['wildcards']}"
        assert int(res["runtime"]) == config["resources"][rule]["runtime"], where
        assert int(res["mem_mb"]) == config["resources"][rule]["mem_mb"], where
        assert res["slurm_account"] == profile["default-resources"]["slurm_account"], where
        assert "tasks" not in res, where  # the plugin would send --ntasks-per-gpu: one copy of the command per GPU
        if rule in GPU_RULES:
            assert res["slurm_partition"] == gpu_rule["slurm_partition"], where
            assert res["gpu_model"] == gpu_rule["gpu_model"], where
            assert res["nodes"] == "1", where
        else:
            assert res["slurm_partition"] == profile["default-resources"]["slurm_partition"], where
            assert "gpu" not in res and "gpu_model" not in res, where
    by_rule = {job["rule"]: job for job in jobs}
    # Training: one job per stage holding the paper's 8 GPUs on one node, 4 CPUs per worker, torchrun with 8 workers.
    train = by_rule["train_stage"]
    assert train["resources"]["gpu"] == "8" and train["resources"]["tasks_per_gpu"] == "0" and train["threads"] == 32
    assert (train["resources"]["runtime"], train["resources"]["mem_mb"]) == ("1440", "256000")
    assert (dry.stdout + dry.stderr).count("--standalone --nnodes 1 --nproc_per_node 8 -m etchat train") == 3
    # Inference: one GPU per shard, 8 E.T. Bench shards + 2 Charades-STA shards.
    infer = by_rule["infer_shard"]
    assert infer["resources"]["gpu"] == "1" and infer["threads"] == 4
    assert (infer["resources"]["runtime"], infer["resources"]["mem_mb"]) == ("480", "64000")
    assert by_rule["compress_shard"]["threads"] == config["compress"]["workers"]


# ---------------------------------------------------------------------------------------------- node environments
def lock_versions() -> dict[str, str]:
    lines = (REPO / "requirements/cpu.lock").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in pins.items()}


def env_pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """The pip packages an envs/*.yaml pins (name -> version) and its pip options (index URLs)."""
    deps = yaml.safe_load(path.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    options = [line for line in pip if line.startswith("-")]
    pins = dict(line.split("==", 1) for line in pip if not line.startswith("-"))
    assert all(pins.values()), f"{path.name}: every pip package pinned with =="
    return {canonicalize_name(name): version for name, version in pins.items()}, options


def rule_environments() -> dict[str, tuple[str, str]]:
    """rule -> (its conda env file, the `etchat` command it runs), read from rules/*.smk."""
    text = "\n".join(path.read_text() for path in sorted((REPO / "rules").glob("*.smk")))
    rules = {}
    for block in re.split(r"\n(?=rule \w+:)", text):
        name = re.match(r"rule (\w+):", block)
        if name:
            env = re.search(r'conda:\s*"\.\./(envs/[\w-]+\.yaml)"', block)
            command = re.search(r"etchat ([a-z-]+)|launcher\} (train) ", block)
            assert env and command, f"rule {name.group(1)}: a conda env and one etchat command"
            rules[name.group(1)] = (env.group(1), command.group(1) or command.group(2))
    return rules


def test_node_environments_are_pinned_to_the_tested_versions():
    """envs/*.yaml (`--sdm conda` on cluster nodes) pin what requirements/cpu.lock pins; training and inference get
    PyPI's torch, the CUDA build; scoring the CPU build (it needs no GPU)."""
    lock = lock_versions()
    for path in sorted((REPO / "envs").glob("*.yaml")):
        pins, options = env_pins(path)
        for name, version in pins.items():
            assert name in lock, f"{path.name}: {name} is not in requirements/cpu.lock"
            assert version.split("+")[0] == lock[name], f"{path.name}: {name}=={version}, the lock has {lock[name]}"
    train, options = env_pins(REPO / "envs/train.yaml")
    assert train["torch"] == lock["torch"] and not options, "train.yaml: torch from PyPI (the CUDA build), no CPU index"
    scoring, options = env_pins(REPO / "envs/eval.yaml")
    assert scoring["torch"] == f"{lock['torch']}+cpu" and any("whl/cpu" in o for o in options)
    environments = {env for env, _ in rule_environments().values()}
    assert environments == {"envs/video.yaml", "envs/train.yaml", "envs/eval.yaml"}


def imported_packages(modules: set[str]) -> set[str]:
    """The third-party top-level packages that these etchat modules, and the etchat modules they import, import
    anywhere in their code (inside functions too), read from the source."""
    found, seen, todo = set(), set(), list(modules)
    while todo:
        module = todo.pop()
        base = REPO / module.replace(".", "/")
        path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module in seen or not path.is_file():
            continue  # (a name imported from a package, not a module)
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # its packages' __init__
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parent = ".".join(parts[: len(parts) - node.level + (path.name == "__init__.py")])
                source = f"{parent}.{node.module}" if node.level and node.module else node.module or parent
                names = [source] + [f"{source}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "etchat":
                    todo.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


def test_each_rule_environment_holds_what_its_command_imports():
    """Every package a rule's `etchat` command imports (any etchat module it reaches, lazy imports included) is
    installed by the rule's env: pinned there, or a dependency of what is pinned."""
    from etchat.cli import COMMANDS

    by_env: dict[str, set[str]] = {}
    for env, command in rule_environments().values():
        by_env.setdefault(env, {"etchat.cli"}).add(COMMANDS[command][0])
    dist_of = packages_distributions()
    for env, modules in sorted(by_env.items()):
        packages = imported_packages(modules)
        assert packages, env
        unknown = sorted(p for p in packages if p not in dist_of)
        assert not unknown, f"{env}: imports {unknown}, which no installed distribution provides"
        needed = {canonicalize_name(dist) for p in packages for dist in dist_of[p]}
        pins, _ = env_pins(REPO / env)
        missing = sorted(needed - installed_with(pins))
        assert not missing, f"{env}: its rules' commands import {missing}, which it does not install"


def installed_with(pins: dict[str, str]) -> set[str]:
    """The packages pip installs for `pins`: them and their dependencies (as the venv's metadata says)."""
    seen, todo = set(), list(pins)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


# ---------------------------------------------------------------------------------------------- the real SLURM
def cannot_run_slurm() -> str | None:
    """Why this machine cannot run the test cluster at all, or None."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "scripts/local_slurm.sh needs Linux and root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "no SLURM installed and no apt-get to install it"
    return None


def cluster_script(command: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ETCHAT_SLURM_PARTITION": CLUSTER["partition"],
        "ETCHAT_SLURM_ACCOUNT": CLUSTER["account"],
        "ETCHAT_SLURM_GPU_TYPE": CLUSTER["gpu_type"],
        "ETCHAT_SLURM_GPUS": str(CLUSTER["gpus"]),
    }
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), command], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A single-node SLURM started by the repo's script; exactly its daemons are stopped afterwards, pass or fail."""
    reason = cannot_run_slurm()
    if reason:
        pytest.skip(reason)
    try:
        up = cluster_script("up")
        assert up.returncode == 0, f"scripts/local_slurm.sh up failed:\n{up.stderr[-3000:]}"
        yield
    finally:
        down = cluster_script("down")
        assert down.returncode == 0, down.stderr[-3000:]


def slurm_jobs(workdir: Path) -> list[dict]:
    """Every job SLURM ran from `workdir`, as `scontrol show job` describes it (finished jobs stay MinJobAge)."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    jobs = [dict(field.split("=", 1) for field in line.split() if "=" in field) for line in out.splitlines()]
    return [job for job in jobs if job.get("WorkDir") == str(workdir)]


def job_step(job_id: str) -> dict:
    """The step that ran the rule (`srun` of the jobstep plugin, step 0): its task count and what it held."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-j", f"{job_id}.0", "-o", "NTasks,NNodes,AllocTRES"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")[0]  # fmt: skip
    ntasks, nnodes, tres = out.split("|")
    return {"tasks": ntasks, "nodes": nnodes, "tres": dict(item.split("=", 1) for item in tres.split(",") if item)}


def minutes(limit: str) -> int:
    """SLURM's [D-]HH:MM:SS as minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def megabytes(memory: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MGT])", memory).groups()
    return int(number) * {"M": 1, "G": 1024, "T": 1024**2}[unit]


def expected_threads(rule: str, config: dict) -> int:
    """The CPUs each rule asks for: its `threads` (config.yaml's resources comment lists them)."""
    return {
        "synth": 2,
        "compress_shard": config["compress"]["workers"],
        "train_stage": config["train"]["threads"] * config["train"]["gpus"],
        "infer_shard": config["infer"]["threads"],
    }.get(rule, 1)


def rules_run(output: str) -> Counter:
    """Jobs per rule in a run's log (a local run prints each as `localrule`), less the target rule `all`."""
    return Counter(job["rule"] for job in job_blocks(output) if job["rule"] != "all")


def assert_same_results(local: Path, cluster: Path, config: dict) -> None:
    """What a run produces, compared where it is deterministic: everything but timings and absolute paths."""
    same_json = [
        "results/infer/etbench/predictions.json",
        "results/infer/charades/predictions.json",
        "results/evaluate/etbench/metrics.json",
        "results/evaluate/charades/metrics.json",
        "results/train/stage3/grounding.json",
        *(f"results/annotations/{name}.json" for name in ("stage1", "stage2", "stage3", "etbench_vid")),
    ]
    for rel in same_json:
        assert json.loads((cluster / rel).read_text()) == json.loads((local / rel).read_text()), rel
    for vset in config["video_sets"]:
        rel = f"results/compress/{vset}/manifest.tsv"
        a, b = (pd.read_csv(root / rel, sep="\t", keep_default_na=False) for root in (local, cluster))
        pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"), obj=rel)
    for stage in (1, 2, 3):
        rel = f"results/train/stage{stage}/metrics.tsv"
        a, b = (pd.read_csv(root / rel, sep="\t").drop(columns="samples_per_s") for root in (local, cluster))
        pd.testing.assert_frame_equal(a, b, obj=rel)
    for model in ("base", "stage1", "stage2", "stage3"):
        a, b = (load_file(root / f"results/models/{model}/model.safetensors") for root in (local, cluster))
        assert a.keys() == b.keys(), model
        assert all(torch.equal(a[name], b[name]) for name in a), f"{model}: weights differ"


@pytest.mark.slow
def test_demo_dag_through_the_slurm_profile_equals_a_local_run(slurm_cluster, tmp_path):
    config = deep_merge(load_config([REPO / "config.yaml", REPO / ".test/config.yaml"]), GPU_OVERLAY)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for workdir in (local, cluster):
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # The repo's profile with the values its comments say to edit set for this cluster; `--profile slurm` then finds
    # it in ./slurm/ of the work directory, as it finds the repo's own from the repo root.
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"].update(slurm_partition=CLUSTER["partition"], slurm_account=CLUSTER["account"])
    for rule in GPU_RULES:
        profile["set-resources"][rule].update(slurm_partition=CLUSTER["partition"], gpu_model=CLUSTER["gpu_type"])
    profile["slurm-init-seconds-before-status-checks"] = 2  # jobs of seconds, not hours
    (cluster / "slurm").mkdir()
    (cluster / "slurm/config.yaml").write_text(yaml.safe_dump(profile))

    # The local run goes on beside the cluster run (which mostly waits for job start-ups and status polls).
    started = time.monotonic()
    local_run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2"],
        cwd=local, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        run = snakemake("--profile", "slurm", "--snakefile", str(REPO / "Snakefile"), cwd=cluster, timeout=900)
        local_out, _ = local_run.communicate(timeout=900)
    finally:
        local_run.kill()
    print(f"local and SLURM runs: {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert local_run.returncode == 0, local_out[-5000:]

    # Every job of the DAG went through sbatch, with what its rule asked for.
    jobs = slurm_jobs(cluster)
    submitted = Counter(re.match(r"rule_(.+?)(_wildcards_.*)?$", job["Comment"]).group(1) for job in jobs)
    assert submitted == rules_run(local_out), (submitted, rules_run(local_out))
    # Only `rule all` (no command) ran on the submitting machine.
    assert [job["rule"] for job in job_blocks(run.stdout + run.stderr) if job["local"]] == ["all"]
    for job in jobs:
        rule = re.match(r"rule_(.+?)(_wildcards_.*)?$", job["Comment"]).group(1)
        where = f"{job['Comment']} (job {job['JobId']})"
        assert job["JobState"] == "COMPLETED", where
        assert (job["Partition"], job["Account"]) == (CLUSTER["partition"], CLUSTER["account"]), where
        assert (job["NumNodes"], job["NumTasks"]) == ("1", "1"), where
        assert int(job["CPUs/Task"]) == expected_threads(rule, config), where
        assert megabytes(job["MinMemoryNode"]) == config["resources"][rule]["mem_mb"], where
        assert minutes(job["TimeLimit"]) == config["resources"][rule]["runtime"], where
        gpus = {"train_stage": config["train"]["gpus"], "infer_shard": config["infer"]["gpu"]}.get(rule, 0)
        step = job_step(job["JobId"])
        assert (step["tasks"], step["nodes"]) == ("1", "1"), where  # one task runs the rule (torchrun inside)
        if gpus:
            assert job["TresPerJob"] == f"gres:gpu:{CLUSTER['gpu_type']}:{gpus}", where
            assert step["tres"].get("gres/gpu") == str(gpus), where
        else:
            assert "gpu" not in job.get("TresPerJob", "") and "gres/gpu" not in step["tres"], where
    assert submitted["train_stage"] == 3 and submitted["infer_shard"] == 3

    # Inside the jobs the GPUs were fake: training (2 workers) and inference ran on CPU, as in the local run.
    for workdir in (local, cluster):
        for stage in (1, 2, 3):
            summary = json.loads((workdir / f"results/train/stage{stage}/summary.json").read_text())
            assert (summary["workers"], summary["device"]) == (2, "cpu")
        for shard in (workdir / "results/infer").glob("*/shards/*-of-*.json"):
            assert json.loads(shard.read_text())["device"] == "cpu"
    assert_same_results(local, cluster, config)
