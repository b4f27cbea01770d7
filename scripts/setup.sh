#!/usr/bin/env bash
# Installs everything the pipeline needs on a Debian machine (Python 3.11, root): system packages
# (ffmpeg, Java for the caption metrics, numactl for DeepSpeed's launcher) and a virtual environment
# in .venv with the pinned CPU lock plus this package in editable mode. Safe to re-run: it only adds
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v numactl >/dev/null || need_apt+=(numactl)
if ((${#need_apt[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.etchat-installed
if [ ! -f "$stamp" ] || [ requirements/cpu.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/cpu.lock
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
    touch "$stamp"
fi
echo "etchat: environment ready in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
