"""
The float64 parity check of cnnlab's training of imported models (a measuring stick, never a
dependency): exports a model with torch.onnx.export in training mode (BatchNormalization kept as
nodes, no constant folding), then trains it for a few SGD steps in PyTorch twice from the same
starting weights, once in float64 (the reference) and once in float32 (whose own distance from the
float64 run is the noise floor of a float32 update), and writes the data, the exported model and
both results for bench/parity.ts to compare with cnnlab's float32 train step.

Models: `dwse`, a depthwise-separable block with squeeze-and-excitation and HardSwish at
3xSIZExSIZE (default 32), and `mobilenet_v2`, torchvision's MobileNetV2 (width 1.0, 3 classes) at
3xSIZExSIZE (default 64). Dropout is disabled for the parity run: every nn.Dropout's p is set to 0
before the export and the training (MobileNetV2's classifier has one, p = 0.2), so both sides
compute the same deterministic step.

The export traces the model in training mode, which runs one forward pass and so moves the
BatchNorm running statistics; the file holds the moved values, and PyTorch trains from the same
(the state after the export), so both sides start from what the file holds.

Writes to OUT_DIR: model.onnx, images.u8 ([steps*batch, 3, SIZE, SIZE] uint8, row-major),
labels.u8 ([steps*batch] uint8, 0..2) and parity.json (torch version, losses of both runs,
`before` (float32 starting values by name, BatchNorm running statistics included), `after64`,
`after32`). The model's input is image / 255, not normalised.

Needs Debian's python3-torch and python3-torchvision (1.13 / 0.14; see ../shared/anchors/README.md):
    /usr/bin/python3 bench/pytorch-parity.py OUT_DIR --model dwse|mobilenet_v2 [--steps 3 --batch 16 --lr 0.05 --size 32]
"""
import argparse
import copy
import json
import os

import numpy as np
import torch
import torch.nn as nn


class DwSE(nn.Module):
    """Stem conv + BN + HardSwish, depthwise conv + BN + HardSwish, squeeze-and-excitation, pointwise conv + BN, GAP, Linear."""

    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se_reduce = nn.Conv2d(16, 8, 1)
        self.se_expand = nn.Conv2d(8, 16, 1)
        self.pw = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        h = self.dw(self.stem(x))
        scale = nn.functional.hardsigmoid(self.se_expand(torch.relu(self.se_reduce(self.se_pool(h)))))
        h = self.pw(h * scale)
        return self.fc(torch.flatten(self.pool(h), 1))


def build(name):
    if name == "dwse":
        return DwSE()
    import torchvision.models as tvm

    return tvm.mobilenet_v2(num_classes=3)


def float_state(model):
    """The floating-point entries of the state dict (parameters and BN running statistics), detached copies."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def check_names(path, state):
    """Prints initialisers of the exported file that are not state-dict entries (and the reverse), and values that differ."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        print("note: python onnx package missing; initialiser names not checked")
        return
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    floats = {k: v for k, v in inits.items() if v.dtype.kind == "f"}
    for k in sorted(set(floats) - set(state)):
        print(f"note: exported initialiser {k} {list(floats[k].shape)} is not a state-dict name")
    for k in sorted(set(state) - set(floats)):
        print(f"note: state-dict entry {k} {list(state[k].shape)} is not an exported initialiser")
    for k in sorted(set(floats) & set(state)):
        if not np.array_equal(floats[k].ravel(), state[k].numpy().ravel()):
            print(f"note: exported {k} differs from the model's value after the export")
    print(f"initialisers: {len(floats)} float, {len(set(floats) & set(state))} match state-dict names")


def train(model, images, labels, steps, batch, lr, dtype):
    """`steps` SGD steps (momentum 0, no weight decay) of mean cross-entropy, BN in train mode; returns the losses."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0)
    losses = []
    for s in range(steps):
        x = torch.from_numpy(images[s * batch:(s + 1) * batch]).to(dtype) / 255
        y = torch.from_numpy(labels[s * batch:(s + 1) * batch].astype(np.int64))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default="dwse", choices=["dwse", "mobilenet_v2"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--size", type=int, help="image side (default 32 for dwse, 64 for mobilenet_v2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    size = args.size or (32 if args.model == "dwse" else 64)
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(args.seed)
    model = build(args.model)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    rng = np.random.default_rng(args.seed)
    n = args.steps * args.batch
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, 3, size=n, dtype=np.uint8)
    images.tofile(os.path.join(args.out, "images.u8"))
    labels.tofile(os.path.join(args.out, "labels.u8"))

    path = os.path.join(args.out, "model.onnx")
    x = torch.from_numpy(images[:2]).float() / 255
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    before = float_state(model)
    check_names(path, before)

    m64 = copy.deepcopy(model).double()
    m32 = copy.deepcopy(model)
    losses64 = train(m64, images, labels, args.steps, args.batch, args.lr, torch.float64)
    losses32 = train(m32, images, labels, args.steps, args.batch, args.lr, torch.float32)
    flat = lambda state: {k: v.numpy().ravel().tolist() for k, v in state.items()}
    result = {"torch": torch.__version__, "model": args.model, "steps": args.steps, "batch": args.batch, "lr": args.lr,
              "size": size, "losses64": losses64, "losses32": losses32, "before": flat(before),
              "after64": flat(float_state(m64)), "after32": flat(float_state(m32))}
    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump(result, f, separators=(",", ":"))
    print(json.dumps({"torch": torch.__version__, "model": args.model, "losses64": losses64, "losses32": losses32}))


if __name__ == "__main__":
    main()
