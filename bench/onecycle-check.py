"""
PyTorch's OneCycleLR for a given run length, as JSON lines of (lr, momentum) per step: the
reference bench/onecycle-check.ts compares cnnlab's schedule with (a measuring stick, never a
dependency). Needs Debian's python3-torch:
    /usr/bin/python3 bench/onecycle-check.py MAX_LR EPOCHS STEPS_PER_EPOCH
"""
import json
import sys

import torch

max_lr, epochs, steps = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
p = torch.nn.Parameter(torch.zeros(1))
opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
# The EVA seed's settings: PyTorch's defaults except max_lr, epochs and steps_per_epoch.
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps)
out = []
for _ in range(epochs * steps):
    g = opt.param_groups[0]
    out.append([g["lr"], g["momentum"]])
    opt.step()
    sched.step()
json.dump(out, sys.stdout)
