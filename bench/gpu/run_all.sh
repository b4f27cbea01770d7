#!/usr/bin/env bash
# Every GPU check in one call (for a lent GPU machine; 2.5 minutes on one H200): the full-size model
# (training step eager vs SDPA, MFU, batched generation), a ZeRO-2 stage-3 optimizer step through the real
# trainer, and batched shard inference. Each script gets its own time limit, so one overrun still leaves the
# others' figures. Figures go to $OUT (or results/bench_gpu/) as JSON, and to stdout.
#   PYTHON=.venv/bin/python bash bench/gpu/run_all.sh      # an environment with envs/train.yaml's packages
#   TINY=1 bash bench/gpu/run_all.sh                       # the same scripts with the tiny model on a CPU (tests)
# Every figure also lands in one table, figures.tsv (benchmark, figure, value).
# Without ffmpeg there, set BENCH_VIDEOS to a folder of the inference benchmark's videos written elsewhere
# (any run of bench_infer_gpu.py with --videos DIR on a machine with ffmpeg writes them there).
set -u
cd "$(dirname "$0")/../.."
py=${PYTHON:-python}
out=${OUT:-results/bench_gpu}
mkdir -p "$out"
tiny=${TINY:+--tiny}
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
else
    echo "no nvidia-smi: no NVIDIA GPU here" | tee "$out/gpu.txt"
fi
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
status=0
timeout 270 "$py" bench/gpu/bench_model_gpu.py $tiny --json "$out/model.json" || status=1
timeout 150 "$py" bench/gpu/bench_train_gpu.py $tiny --steps 3 --json "$out/train.json" || status=1
timeout 150 "$py" bench/gpu/bench_infer_gpu.py $tiny --samples 8 --json "$out/infer.json" \
    ${BENCH_VIDEOS:+--videos "$BENCH_VIDEOS"} || status=1
"$py" bench/gpu/common.py "$out" || status=1
exit $status
