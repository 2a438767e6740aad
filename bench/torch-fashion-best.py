"""
fashion-best in PyTorch for bench/vs-pytorch.ts: ../shared/anchors/torch_bench.py's measuring loop
with cnnlab's fashion-best preset (96,554 parameters: bias-free 3x3 convs with BatchNorm and ReLU,
32-32-pool-64-64-pool, one linear layer). Arguments as torch_bench.py's, --model ignored.
"""
import importlib.util
import os
import sys

import torch.nn as nn

path = os.environ.get("TORCH_BENCH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "anchors", "torch_bench.py"))
spec = importlib.util.spec_from_file_location("torch_bench", path)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def fashion_best(_name):
    def blk(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*blk(1, 32), *blk(32, 32), nn.MaxPool2d(2), *blk(32, 64), *blk(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 10))


if __name__ == "__main__":
    bench.make_model = fashion_best
    sys.argv = [sys.argv[0], "--model", "eva-best", *sys.argv[1:]]
    bench.main()
