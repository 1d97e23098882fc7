"""GPU peers of `flows bench --device cuda`: normflows and zuko on the same GPU, timed with
CUDA synchronisation, for the figures issue 13 sets (run by scripts/cuda-check on a GPU
machine; any machine with an NVIDIA GPU, PyTorch, normflows and zuko can run it):

1. normflows' README RealNVP (2 AffineCouplingBlocks, MLP([1, 64, 64, 2], init_zeros), swap
   Permutes, DiagGaussian base), float32, one training step at batch 512: forward_kld,
   backward, Adam (lr 5e-4, weight decay 1e-5). Batches are drawn on the GPU from a pool of
   2^20 TwoMoons samples made once (the cheapest way for the peer to get data).
2. The same model's log_prob at batch 2^20 (no gradient), per call.
3. zuko.flows.NSF(2, transforms=3, hidden_features=(64, 64), bins=8), one training step at
   batch 4096 (-log_prob mean, backward, Adam lr 1e-3).

Each figure is the median of --repeats timed runs of --iters steps after --warmup steps.
Prints one JSON object per figure (keys: library, what, batch, median_s_per_step,
steps_per_s). Exits with status 0 and a message when torch, CUDA, normflows or zuko is
missing.

    python3 bench/gpu_peers.py --repeats 5
"""
import argparse
import json
import sys
import time

try:
    import torch
except ImportError as e:
    print(f"gpu_peers.py: PyTorch cannot be imported ({e}); skipping the GPU peers")
    sys.exit(0)
if not torch.cuda.is_available():
    print("gpu_peers.py: torch sees no CUDA device; skipping the GPU peers")
    sys.exit(0)


def timed(step, iters, warmup, repeats):
    """Median seconds per call of `step` over `repeats` runs of `iters` calls."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
        per_step.append((time.perf_counter() - start) / iters)
    per_step.sort()
    return per_step[len(per_step) // 2]


def report(library, what, batch, seconds):
    print(json.dumps({"library": library, "what": what, "batch": batch,
                      "median_s_per_step": seconds, "steps_per_s": 1.0 / seconds}), flush=True)


def normflows_figures(args, device):
    try:
        import normflows as nf
    except ImportError as e:
        print(f"gpu_peers.py: normflows cannot be imported ({e}); skipping its figures")
        return
    torch.manual_seed(0)
    flows = []
    for _ in range(2):
        flows.append(nf.flows.AffineCouplingBlock(nf.nets.MLP([1, 64, 64, 2], init_zeros=True)))
        flows.append(nf.flows.Permute(2, mode="swap"))
    model = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(2), flows).to(device)
    pool = nf.distributions.TwoMoons().sample(2 ** 20).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-5)

    def train_step():
        batch = pool[torch.randint(0, pool.shape[0], (512,), device=device)]
        optimizer.zero_grad()
        loss = model.forward_kld(batch)
        loss.backward()
        optimizer.step()

    report("normflows", "realnvp train step", 512, timed(train_step, args.iters, 50, args.repeats))

    def log_prob():
        with torch.no_grad():
            model.log_prob(pool)

    report("normflows", "realnvp log_prob", 2 ** 20, timed(log_prob, 20, 3, args.repeats))


def zuko_figures(args, device):
    try:
        import zuko
        import normflows as nf
    except ImportError as e:
        print(f"gpu_peers.py: zuko (or normflows, for TwoMoons) cannot be imported ({e}); "
              "skipping its figure")
        return
    torch.manual_seed(0)
    flow = zuko.flows.NSF(2, transforms=3, hidden_features=(64, 64), bins=8).to(device)
    pool = nf.distributions.TwoMoons().sample(2 ** 20).to(device)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def train_step():
        batch = pool[torch.randint(0, pool.shape[0], (4096,), device=device)]
        optimizer.zero_grad()
        loss = -flow().log_prob(batch).mean()
        loss.backward()
        optimizer.step()

    report("zuko", "nsf train step", 4096, timed(train_step, args.iters, 20, args.repeats))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    normflows_figures(args, device)
    zuko_figures(args, device)


if __name__ == "__main__":
    main()
