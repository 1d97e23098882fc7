"""normflows peer of `flows bench`: normflows' README RealNVP on two moons, whole training step.

Times the training loop only -- sampling a batch from normflows' TwoMoons, forward_kld,
backward and the Adam step -- for exactly the configuration of normflows' own README example
(2 AffineCouplingBlocks with MLP([1, 64, 64, 2], init_zeros=True), each followed by a swap
Permute, DiagGaussian(2) base, Adam lr 5e-4, weight decay 1e-5, batch 512, 3201 iterations),
and reports iterations per second.  After the last run it reports the held-out test NLL in
nats: the mean of -model.log_prob(x) over fresh samples of the target, with its standard
error (normflows' log_prob is normalised, so this is a true NLL).

Run it side by side with ours, one after the other on the same machine:

    cargo build --release -p flows-cli && ./target/release/flows bench --repeats 3 \
        && /tmp/peers/bin/python bench/normflows_two_moons.py --repeats 3

(any interpreter with torch and normflows will do; /tmp/peers is just an example venv).

Options: --iters (3201), --batch (512), --threads (1, torch.set_num_threads), --repeats (1),
--seed (0), --test-samples (20000), --json (also print one JSON object with the figures).
Each run builds a fresh model after torch.manual_seed(seed); the median is taken like
`flows bench` does (the middle of the sorted rates, the upper one for an even count).

Skips with a message, exit status 0, when torch or normflows cannot be imported.
"""
import argparse
import json
import math
import sys
import time

try:
    import torch
except ImportError as e:
    print(f"normflows_two_moons.py: PyTorch cannot be imported ({e}); skipping the normflows peer")
    sys.exit(0)

try:
    import normflows as nf
except ImportError as e:
    print(f"normflows_two_moons.py: normflows cannot be imported ({e}); skipping the normflows peer")
    sys.exit(0)


def build_model():
    """normflows' README RealNVP, verbatim."""
    base = nf.distributions.base.DiagGaussian(2)
    flows = []
    for i in range(2):
        param_map = nf.nets.MLP([1, 64, 64, 2], init_zeros=True)
        flows.append(nf.flows.AffineCouplingBlock(param_map))
        flows.append(nf.flows.Permute(2, mode='swap'))
    return nf.NormalizingFlow(base, flows)


def train_once(target, iters, batch, seed):
    """One timed training run; returns (model, seconds, final loss, skipped steps)."""
    torch.manual_seed(seed)
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-5)
    skipped = 0
    loss = None
    start = time.perf_counter()
    for it in range(iters):
        optimizer.zero_grad()
        loss = model.forward_kld(target.sample(batch))
        if ~(torch.isnan(loss) | torch.isinf(loss)):
            loss.backward()
            optimizer.step()
        else:
            skipped += 1
    seconds = time.perf_counter() - start
    final_loss = loss.item() if loss is not None else float("nan")
    return model, seconds, final_loss, skipped


def test_nll(model, target, n):
    """Mean and standard error of -log p(x) in nats over n fresh target samples."""
    model.eval()
    with torch.no_grad():
        x = target.sample(n)
        nll = -model.log_prob(x).double()
    model.train()
    finite = torch.isfinite(nll)
    nll = nll[finite]
    m = nll.numel()
    mean = nll.mean().item()
    se = (nll.std(unbiased=True).item() / math.sqrt(m)) if m > 1 else float("nan")
    return mean, se, int(n - m)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=3201)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=1, help="timed runs; the median is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-samples", type=int, default=20000)
    p.add_argument("--json", action="store_true", help="also print one JSON object at the end")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    target = nf.distributions.TwoMoons()

    runs = []
    model = None
    for r in range(max(args.repeats, 1)):
        model, seconds, final_loss, skipped = train_once(target, args.iters, args.batch, args.seed)
        rate = args.iters / seconds
        runs.append({"run": r + 1, "iters": args.iters, "seconds": seconds,
                     "it_per_s": rate, "final_loss": final_loss, "skipped": skipped})
        extra = f"; {skipped} non-finite steps skipped" if skipped else ""
        print(f"run {r + 1}: {args.iters} iterations in {seconds:.3f} s, {rate:.0f} it/s "
              f"(final loss {final_loss:.4f}){extra}", flush=True)

    rates = sorted(run["it_per_s"] for run in runs)
    median = rates[len(rates) // 2]
    mean = sum(rates) / len(rates)
    threads = torch.get_num_threads()
    print(f"normflows realnvp on two-moons, batch {args.batch}, torch threads {threads}: "
          f"median {median:.0f} it/s (mean {mean:.0f}) over {len(rates)} runs")

    nll, se, dropped = test_nll(model, target, args.test_samples)
    extra = f"; {dropped} non-finite values dropped" if dropped else ""
    print(f"test NLL: {nll:.4f} (standard error {se:.4f}) nats over {args.test_samples} "
          f"fresh samples, last run's model{extra}")
    print(f"torch {torch.__version__}, normflows {nf.__version__}")

    if args.json:
        print(json.dumps({
            "library": "normflows",
            "flow": "realnvp",
            "dataset": "two-moons",
            "iters": args.iters,
            "batch": args.batch,
            "threads": threads,
            "seed": args.seed,
            "runs": runs,
            "median_it_per_s": median,
            "mean_it_per_s": mean,
            "test_samples": args.test_samples,
            "test_nll": nll,
            "test_nll_se": se,
            "test_nll_nonfinite": dropped,
            "torch_version": torch.__version__,
            "normflows_version": nf.__version__,
        }))


if __name__ == "__main__":
    main()
