"""Writes optim_fixture.json: what PyTorch's optimizers, schedulers and gradient clipping do,
in float64, for `tests/optim.rs` to hold flow-train's to.

Two parameters (3x2 and 1x2) start from fixed values and receive a fixed sequence of six
gradients (the optimizer semantics alone, no model). Recorded after every step: both
parameters. Schedulers: the learning rate of each of 12 steps. Clipping: the total norm and
the clipped gradients.

    /tmp/peers/bin/python crates/flow-train/tests/data/make_optim_fixture.py
"""
import json
import pathlib

import torch

torch.manual_seed(7)
P0 = [torch.randn(3, 2, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)]
GRADS = [[torch.randn(3, 2, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)] for _ in range(6)]
# A zero gradient on one step exercises momentum buffers and moments on their own.
GRADS[3][1] = torch.zeros(1, 2, dtype=torch.float64)

CASES = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-1),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
}


def as_list(t):
    return t.flatten().tolist()


out = {
    "params": [as_list(p) for p in P0],
    "shapes": [list(p.shape) for p in P0],
    "grads": [[as_list(g) for g in step] for step in GRADS],
    "optimizers": {},
}
for name, make in CASES.items():
    ps = [p.clone().requires_grad_(True) for p in P0]
    opt = make(ps)
    after = []
    for step in GRADS:
        for p, g in zip(ps, step):
            p.grad = g.clone()
        opt.step()
        after.append([as_list(p.detach()) for p in ps])
    out["optimizers"][name] = after

def lrs(make_sched, steps=12, lr=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_sched(opt)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen

out["schedules"] = {
    "cosine": lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)),
    "warmup": lrs(lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=4)),
    "warmup_cosine": lrs(lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=4),
         torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8, eta_min=1e-3)],
        milestones=[4])),
}

gs = [g.clone() for g in GRADS[0]]
ps = [p.clone().requires_grad_(True) for p in P0]
for p, g in zip(ps, gs):
    p.grad = g
norm = torch.nn.utils.clip_grad_norm_(ps, max_norm=0.5)
out["clip"] = {"max_norm": 0.5, "total_norm": norm.item(), "clipped": [as_list(p.grad) for p in ps]}

path = pathlib.Path(__file__).with_name("optim_fixture.json")
path.write_text(json.dumps(out, indent=1))
print(f"wrote {path}")
