"""
Fine-tuning at 3xSIZExSIZE in PyTorch for bench/vs-pytorch.ts: torchvision's ResNet-18 or MobileNetV2
with a 10-class head, SGD with momentum, cross-entropy, on made-up images (uint8, scaled by 1/255 each
step; random labels). --mode full trains every parameter (BatchNorm on batch statistics); --mode frozen
trains the head alone: requires_grad False on the backbone and its BatchNorms on running statistics,
as cnnlab's `--freeze backbone` runs the whole graph. Prints one JSON line as torch_bench.py does.

    python bench/torch-finetune.py --model resnet18 --mode full [--batch 32] [--size 224] [--steps 4] [--warmup 1] [--threads 2]
    /usr/bin/python3 bench/torch-finetune.py --model resnet18 --export OUT.onnx   (torchvision's model, random weights)
    /usr/bin/python3 bench/torch-finetune.py --check   (the definitions below against torchvision's)

The two architectures are written out below, module for module as torchvision 0.14 builds them (same
state_dict names and shapes, same outputs for the same weights: --check), because PyTorch 2.13's venv
(/tmp/torch2) has no torchvision: the CPU-only torch wheel there does not load the index's torchvision
(built against the CUDA torch: `operator torchvision::nms does not exist`). Both PyTorch columns run these.
"""
import argparse
import importlib.util
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_act(i, o, k=3, stride=1, groups=1, act=nn.ReLU6):
    """torchvision's Conv2dNormActivation: bias-free conv, BatchNorm, activation, in one Sequential."""
    return nn.Sequential(nn.Conv2d(i, o, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(o), act(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.downsample = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o)) if stride != 1 or i != o else None

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for n, (i, o, s) in enumerate(widths, 1):
            setattr(self, f"layer{n}", nn.Sequential(BasicBlock(i, o, s), BasicBlock(o, o, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, i, o, stride, t):
        super().__init__()
        hidden = round(i * t)
        self.use_res_connect = stride == 1 and i == o
        layers = [conv_bn_act(i, hidden, 1)] if t != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, o, 1, 1, 0, bias=False), nn.BatchNorm2d(o)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes):
        super().__init__()
        features = [conv_bn_act(3, 32, stride=2)]
        c_in = 32
        for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
            for k in range(n):
                features.append(InvertedResidual(c_in, c, s if k == 0 else 1, t))
                c_in = c
        features.append(conv_bn_act(c_in, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(1280, classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), (1, 1)), 1))


def loaded_blas():
    """torch_bench.py's report of the BLAS torch mapped (bench/vs-pytorch.ts holds PyTorch 1.13 to OpenBLAS)."""
    path = os.environ.get("TORCH_BENCH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "anchors", "torch_bench.py"))
    if not os.path.exists(path):
        return "unknown"
    spec = importlib.util.spec_from_file_location("torch_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.loaded_blas()


MODELS = {"resnet18": (ResNet18, "fc"), "mobilenet_v2": (MobileNetV2, "classifier")}


def freeze_backbone(model, head):
    """Only the head's parameters train; the backbone's BatchNorms run on running statistics."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(head + ".")
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and not name.startswith(head + "."):
            m.eval()


def speed(a):
    """Images/s of the train step over --steps steps after --warmup, one JSON line."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    make, head = MODELS[a.model]
    model = make(10).train()
    if a.mode == "frozen":
        freeze_backbone(model, head)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=a.lr, momentum=a.momentum)
    images = torch.randint(0, 256, (4, a.batch, 3, a.size, a.size), dtype=torch.uint8)
    labels = torch.randint(0, 10, (4, a.batch))

    def step(k):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images[k % 4].float() / 255), labels[k % 4])
        loss.backward()
        opt.step()
        return loss

    for k in range(a.warmup):
        step(k)
    t0 = time.perf_counter()
    for k in range(a.steps):
        loss = step(a.warmup + k)
    loss.item()
    dt = time.perf_counter() - t0
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(json.dumps({"framework": "torch", "version": torch.__version__, "model": a.model, "mode": a.mode, "batch": a.batch,
                      "size": a.size, "threads": a.threads, "blas": loaded_blas(), "trained_params": trained, "steps": a.steps,
                      "img_per_s": round(a.steps * a.batch / dt, 2), "ms_per_step": round(1000 * dt / a.steps, 1),
                      "last_loss": round(loss.item(), 4)}), flush=True)


def torchvision_model(name):
    import torchvision.models as tvm
    return getattr(tvm, name)(num_classes=10)


def export(a):
    """torchvision's model (random weights, 10 classes), opset 17, dynamic batch, at 3xSIZExSIZE, its
    BatchNorms kept (training_mode 0, as running statistics): torch.onnx.export of an eval-mode model
    folds each BatchNorm into its convolution (with or without do_constant_folding), and cnnlab would
    then train a network without BatchNorm; TrainingMode.PRESERVE keeps them."""
    torch.manual_seed(0)
    model = torchvision_model(a.model).eval()
    os.makedirs(os.path.dirname(os.path.abspath(a.export)), exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 3, a.size, a.size), a.export, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17,
                      training=torch.onnx.TrainingMode.PRESERVE)
    print(json.dumps({"exported": a.export, "bytes": os.path.getsize(a.export)}), flush=True)


def check():
    """The definitions above hold torchvision's parameters and give its outputs (train and eval mode)."""
    for name, (make, _) in MODELS.items():
        torch.manual_seed(0)
        ref, ours = torchvision_model(name), make(10)
        a, b = ref.state_dict(), ours.state_dict()
        assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()], f"{name}: state_dict differs"
        ours.load_state_dict(a)
        x = torch.rand(2, 3, 64, 64)
        for mode in ("eval", "train"):
            getattr(ref, mode)(), getattr(ours, mode)()
            torch.manual_seed(1)
            y_ref = ref(x)
            torch.manual_seed(1)
            diff = (y_ref - ours(x)).abs().max().item()
            assert diff < 1e-5, f"{name} {mode}: outputs differ by {diff}"
        print(f"{name}: {len(a)} tensors, same names, shapes and outputs as torchvision's", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18", choices=sorted(MODELS))
    ap.add_argument("--mode", default="full", choices=["full", "frozen"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--export", help="write torchvision's model as ONNX to this path instead of measuring")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.check:
        return check()
    if a.export:
        return export(a)
    speed(a)


if __name__ == "__main__":
    main()
