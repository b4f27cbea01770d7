"""`load_checkpoint` streams: loading a checkpoint never holds a second copy of the weights.

Measured on a mid-size model (107 M parameters, 204 MiB in fp16) in fresh processes: the peak resident memory a load
adds, once every weight has been read, stays near the model's own size whether the checkpoint is eight shards or
one file; a loader that reads the state dict first (the control) needs twice that, so the measurement would see it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from etchat.model import ETChatPhi3ForCausalLM, save_checkpoint, tiny_config

MEASURE = r"""
import json, sys, torch
from pathlib import Path

def status(key):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
    return int(line.split()[1]) / 1024  # MiB

from etchat.model import load_checkpoint, read_state_dict
path, how = Path(sys.argv[1]), sys.argv[2]
torch.ones(1).sum()  # torch's lazy start-up, outside the measurement
before = status("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
if how == "load_checkpoint":
    model, _ = load_checkpoint(path, dtype=torch.float16, load_tokenizer=False)
else:  # the control: every shard read into one state dict, then copied into the model
    state = {k: v for f in sorted(path.glob("*.safetensors")) for k, v in read_state_dict(f).items()}
    model, _ = load_checkpoint(path, dtype=torch.float16, load_tokenizer=False)
    model.load_state_dict(state, strict=False)
touched = sum(float(p.detach().reshape(-1)[::1024].float().sum()) for p in model.parameters())  # every page
print(json.dumps({"added_peak_mib": status("VmHWM:") - before}))
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config("test", vocab_size=32064, pad_token_id=0, stage=2, hidden_size=768, intermediate_size=2048,
                         num_hidden_layers=8, num_attention_heads=12, num_key_value_heads=12)  # fmt: skip
    model = ETChatPhi3ForCausalLM(config)
    root = tmp_path_factory.mktemp("streaming")
    out = {name: save_checkpoint(model, root / name, max_shard_size=size) for name, size in (("shards", "25MB"),
           ("one_file", "2GB"))}  # fmt: skip
    model_mib = sum(p.numel() * 2 for p in model.state_dict().values()) / 2**20
    return out, model_mib


def added_peak(path, how: str) -> float:
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path), how], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])["added_peak_mib"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_loading_adds_the_model_once_whatever_the_shards(checkpoints):
    dirs, model_mib = checkpoints
    assert len(list(dirs["shards"].glob("*.safetensors"))) == 8
    shards = added_peak(dirs["shards"], "load_checkpoint")
    one_file = added_peak(dirs["one_file"], "load_checkpoint")
    control = added_peak(dirs["shards"], "state_dict_first")
    assert shards < 1.3 * model_mib, (shards, model_mib)
    assert one_file < 1.3 * model_mib, (one_file, model_mib)
    assert control > 1.8 * model_mib, (control, model_mib)  # the measurement sees a second copy
