"""zuko peer of `flows bench --flow maf`: zuko's MAF (or NSF) on normflows' TwoMoons.

zuko.flows.MAF(2, transforms=3, hidden_features=(64, 64)) (or NSF with bins 8), trained by
maximum likelihood with Adam (lr 1e-3, no weight decay) at batch 512 for 3201 iterations on
fresh samples of normflows' TwoMoons; the training loop is timed (sampling, log_prob,
backward, step) and the test NLL in nats is the mean of -log p(x) over fresh samples.

    ./target/release/flows bench --flow maf --transforms 3 --lr 1e-3 --weight-decay 0 --repeats 3
    /tmp/peers/bin/python bench/zuko_two_moons.py --flow maf --repeats 3

    ~/peers/bin/python bench/zuko_two_moons.py --flow cnf --iters 30 --test-samples 1000
    ./target/release/flows bench --flow cnf --iters 30 --repeats 1

Options: --flow maf|nsf|cnf (cnf: zuko.flows.CNF(2, hidden_features=[64] * 3)), --transforms (3), --iters (3201), --batch (512), --lr (1e-3),
--threads (1), --repeats (1), --seed (0), --test-samples (100000).
Skips with a message, exit status 0, when torch, zuko or normflows cannot be imported.
"""
import argparse
import math
import sys
import time

try:
    import torch
    import zuko
    import normflows as nf
except ImportError as e:
    print(f"zuko_two_moons.py: {e}; skipping the zuko peer")
    sys.exit(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flow", default="maf", choices=["maf", "nsf", "cnf"])
    p.add_argument("--transforms", type=int, default=3)
    p.add_argument("--iters", type=int, default=3201)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-samples", type=int, default=100_000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    target = nf.distributions.TwoMoons()
    rates = []
    for r in range(args.repeats):
        torch.manual_seed(args.seed + r)
        if args.flow == "cnf":
            # zuko's defaults: ELU, 3 time frequencies, exact trace, dopri5 1e-6 / 1e-5.
            flow = zuko.flows.CNF(2, hidden_features=[64] * 3)
        elif args.flow == "maf":
            flow = zuko.flows.MAF(2, transforms=args.transforms, hidden_features=(64, 64))
        else:
            flow = zuko.flows.NSF(2, transforms=args.transforms, hidden_features=(64, 64), bins=8)
        opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
        # The CNF's cost measure: evaluations of its vector field (forward and adjoint).
        evaluations = [0]
        if args.flow == "cnf":
            flow.transform.ode.register_forward_hook(lambda *_: evaluations.__setitem__(0, evaluations[0] + 1))
        start = time.perf_counter()
        for _ in range(args.iters):
            x = target.sample(args.batch)
            loss = -flow().log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        rates.append(args.iters / seconds)
        if args.flow == "cnf":
            print(f"run {r + 1}: {evaluations[0] / args.iters:.0f} field evaluations per iteration")
        with torch.no_grad():
            chunk = min(10_000, args.test_samples)
            nll = torch.cat([-flow().log_prob(target.sample(chunk))
                             for _ in range(max(1, args.test_samples // chunk))])
        print(f"run {r + 1}: {args.iters} iterations in {seconds:.2f} s, "
              f"{args.iters / seconds:.1f} it/s, test NLL {nll.mean():.4f} "
              f"(standard error {nll.std() / math.sqrt(len(nll)):.4f})")
    rates.sort()
    print(f"zuko {args.flow} ({args.transforms} transforms) on two-moons, batch {args.batch}: "
          f"median {rates[len(rates) // 2]:.1f} it/s over {len(rates)} runs "
          f"({args.threads} thread{'s' if args.threads > 1 else ''})")


if __name__ == "__main__":
    main()
