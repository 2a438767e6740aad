"""
Full-size torchvision classifiers for `bench/families.ts` (a measuring stick, never a dependency):
random weights, 3 classes, exported by PyTorch's TorchScript exporter (opset 17, dynamic batch) at
3xSIZExSIZE, and a folder of drawn images for `cnnlab train --model X.onnx --data-dir DIR`. With
--torch-speed it exports nothing and prints PyTorch's own training speed on the same models
(SGD momentum 0.9, batch --batch, --threads threads, BatchNorm in train mode; images/s over 8 steps
after one warm-up step), the column bench/families.ts is read against.

    /usr/bin/python3 bench/export-families.py OUT_DIR [--size 64] [--images 48]
    /usr/bin/python3 bench/export-families.py --torch-speed [--size 64] [--batch 8] [--threads 2]

Needs Debian's python3-torch and python3-torchvision (1.13 / 0.14).
"""
import time
import argparse
import os

import numpy as np
import torch
import torchvision.models as tvm

FAMILIES = {
    "resnet18": lambda: tvm.resnet18(num_classes=3),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=3),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=3),
    "squeezenet1_1": lambda: tvm.squeezenet1_1(num_classes=3),
    "shufflenet_v2_x0_5": lambda: tvm.shufflenet_v2_x0_5(num_classes=3),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=3),
    "mnasnet0_5": lambda: tvm.mnasnet0_5(num_classes=3),
    "regnet_x_400mf": lambda: tvm.regnet_x_400mf(num_classes=3),
    "densenet121": lambda: tvm.densenet121(num_classes=3),
    "googlenet": lambda: tvm.googlenet(num_classes=3, aux_logits=False, init_weights=True),
}


def image_folder(root, size, per_class):
    """Three classes of drawn shapes (disc, bar, cross) on noisy backgrounds, PNG, train/ and test/."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", max(4, per_class // 4))):
        for cls in ("disc", "bar", "cross"):
            d = os.path.join(root, split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(count):
                bg = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8) // 3
                im = Image.fromarray(bg)
                dr = ImageDraw.Draw(im)
                c = tuple(int(v) for v in rng.integers(128, 255, size=3))
                x, y, r = [int(v) for v in rng.integers(size // 4, 3 * size // 4, size=2)] + [int(rng.integers(size // 8, size // 4))]
                if cls == "disc":
                    dr.ellipse([x - r, y - r, x + r, y + r], fill=c)
                elif cls == "bar":
                    dr.rectangle([x - r, y - r // 3, x + r, y + r // 3], fill=c)
                else:
                    dr.line([x - r, y - r, x + r, y + r], fill=c, width=max(2, r // 3))
                    dr.line([x - r, y + r, x + r, y - r], fill=c, width=max(2, r // 3))
                im.save(os.path.join(d, f"{i:03d}.png"))


def torch_speed(size, batch, threads, steps=8):
    """PyTorch's training images/s per family."""
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} threads, batch {batch}, 3x{size}x{size}")
    for name, make in sorted(FAMILIES.items()):
        model = make().train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.rand(batch, 3, size, size)
        y = torch.arange(batch) % 3

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        step()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        print(f"{name:20s} {steps * batch / (time.perf_counter() - t):8.1f} img/s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=48, help="training images per class")
    ap.add_argument("--torch-speed", action="store_true")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.torch_speed:
        return torch_speed(a.size, a.batch, a.threads)
    if not a.out:
        ap.error("name OUT_DIR (or pass --torch-speed)")
    os.makedirs(a.out, exist_ok=True)
    for name, make in FAMILIES.items():
        model = make().eval()
        path = os.path.join(a.out, f"{name}.onnx")
        torch.onnx.export(model, torch.zeros(1, 3, a.size, a.size), path, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17)
        print(name, os.path.getsize(path), "bytes", flush=True)
    image_folder(os.path.join(a.out, "images"), a.size, a.images)


if __name__ == "__main__":
    main()
