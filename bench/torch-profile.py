"""
Where PyTorch's fine-tuning step goes (the measuring stick for bench/profile.ts --finetune): bench/torch-finetune.py's
model (full fine-tuning, train mode, SGD with momentum, batch 32 at 224x224, made-up images), or a seed row's
(--model partB: batch 64; eva-best, fashion-best: batch 128; 1x28x28, SGD as bench/vs-pytorch.ts runs them, for
bench/profile.ts --row), one warm-up step, then
--steps steps under torch.profiler; prints the wall time per step and the ops by self CPU time (ms per step).
With ONEDNN_VERBOSE=1 oneDNN also prints each primitive's time; a "STEP 1" line marks the end of the warm-up:

    /tmp/torch2/bin/python bench/torch-profile.py [--model resnet18|mobilenet_v2|partB|eva-best|fashion-best] [--steps 2] [--threads 2]
    ONEDNN_VERBOSE=1 /tmp/torch2/bin/python bench/torch-profile.py --steps 1 --no-profiler | awk -F, '/STEP 1/{f=1}
      f && /primitive,exec/ {t[$6","$8]+=$NF} END {for (k in t) print k, t[k]}'
"""
import argparse
import importlib.util
import os
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

spec = importlib.util.spec_from_file_location("torch_finetune", os.path.join(os.path.dirname(__file__), "torch-finetune.py"))
tf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tf)

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="resnet18", choices=["resnet18", "mobilenet_v2", "partB", "eva-best", "fashion-best"])
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--no-profiler", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_model(name):
    """The seed rows' networks as bench/vs-pytorch.ts's PyTorch side builds them (../shared/anchors/torch_bench.py, torch-fashion-best.py)."""
    if name == "fashion-best":
        return load("torch_fashion_best", os.path.join(os.path.dirname(__file__), "torch-fashion-best.py")).fashion_best(name)
    return load("torch_bench", os.environ.get("TORCH_BENCH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "anchors", "torch_bench.py"))).make_model(name)


seed = a.model in ("partB", "eva-best", "fashion-best")
model = (seed_model(a.model) if seed else tf.ResNet18(10) if a.model == "resnet18" else tf.MobileNetV2(10)).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
shape = ((64 if a.model == "partB" else 128), 1, 28, 28) if seed else (32, 3, 224, 224)
images = torch.randint(0, 256, shape, dtype=torch.uint8)
labels = torch.randint(0, 10, (shape[0],))


def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(images.float() / 255), labels).backward()
    opt.step()


for i in range(a.steps + 1):
    if i == 1:
        print("STEP 1", flush=True)
        if not a.no_profiler:
            prof = profile(activities=[ProfilerActivity.CPU]).__enter__()
        t0 = time.perf_counter()
    step()
print(f"wall ms per step {1000 * (time.perf_counter() - t0) / a.steps:.0f}", flush=True)
if not a.no_profiler:
    prof.__exit__(None, None, None)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    for e in rows[:16]:
        print(f"{e.key:48s} {e.self_cpu_time_total / 1000 / a.steps:7.0f} ms {100 * e.self_cpu_time_total / total:5.1f}%  ({e.count // a.steps} calls/step)")
