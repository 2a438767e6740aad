"""
jhu-net as seed 004 trains it, in PyTorch, for comparing cnnlab's `reproduce jhu` across seeds:
Conv(1,10,5) > MaxPool > ReLU > Conv(10,20,5) > MaxPool > ReLU > Linear(320,50) > ReLU >
Dropout(0.5) > Linear(50,10) > log_softmax + NLL; SGD lr 0.01 momentum 0.5, batch 256 (last partial
batch kept), 10 epochs, inputs x/255 normalised with MNIST's (0.1307, 0.3081) on both datasets.
Prints one JSON line per epoch: seed, epoch, test accuracy. Data loading from
../shared/anchors/torch_bench.py (FASHION_DIR / MNIST_DIR).

  LD_LIBRARY_PATH=$OB /usr/bin/python3 bench/torch-jhu.py --dataset fashion --seeds 0,1,2
"""
import argparse
import importlib.util
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

path = os.environ.get("TORCH_BENCH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "anchors", "torch_bench.py"))
spec = importlib.util.spec_from_file_location("torch_bench", path)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


class JhuNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(F.dropout(x, 0.5, self.training)), dim=1)


def tensors(d, prefix):
    x, y = bench.load_idx(d, prefix)
    x = (torch.from_numpy(x.copy()).float() / 255.0 - 0.1307) / 0.3081
    return x.reshape(-1, 1, 28, 28), torch.from_numpy(y).long()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion", choices=["mnist", "fashion"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = bench.MNIST_DIR if args.dataset == "mnist" else bench.FASHION_DIR
    xtr, ytr = tensors(d, "train")
    xte, yte = tensors(d, "t10k")
    for seed in [int(s) for s in args.seeds.split(",")]:
        torch.manual_seed(seed)
        model = JhuNet()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
        for epoch in range(1, args.epochs + 1):
            model.train()
            perm = torch.randperm(len(ytr))
            for i in range(0, len(ytr), 256):
                idx = perm[i:i + 256]
                opt.zero_grad()
                F.nll_loss(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(yte), 1000))
            print(json.dumps({"seed": seed, "epoch": epoch, "test_acc": round(100 * correct / len(yte), 2)}), flush=True)


main()
