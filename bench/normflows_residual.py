"""normflows peer for residual flows: normflows' residual-flow example on two moons, timed and scored.

Builds the model from normflows' own example notebook (examples/residual.ipynb) as it is written:
16 x [Residual(LipschitzMLP([2, 128, 128, 2], init_zeros=True, lipschitz_const=0.9),
reduce_memory=True), ActNorm(2)], a fixed DiagGaussian(2, trainable=False) base,
torch.manual_seed(seed) before the layers are built, the ActNorm layers initialised by one
nfm.log_prob call on a batch of 512 data points in training mode, Adam lr 3e-4 and weight decay
1e-5, batch 512.  One iteration is the notebook's loop body: zero_grad, draw a batch,
loss = forward_kld(x), backward and step only when the loss is finite, then
nf.utils.update_lipschitz(model, 50) (every iteration, also after a skipped step).

Differences from the notebook, on purpose:
  * data: the notebook trains on sklearn's make_moons(512, noise=0.1); this script defaults to
    normflows' TwoMoons (nf.distributions.TwoMoons, rejection sampling on [-3, 3]^2), the target
    of the other peers and of `flows`, whose density is known so the true NLL of the test set is
    printed beside the model's.  --data make-moons uses the notebook's data (needs scikit-learn;
    no true NLL then).
  * numpy is seeded too (normflows draws the Russian-roulette series length with
    np.random.geometric, and make_moons draws its noise from numpy).
  * no plotting; the notebook's evaluation every 500 iterations is replaced by --eval-at.

Timing covers the training loop only (sampling, forward_kld, backward, Adam, update_lipschitz);
evaluations pause the clock.  It reports iterations, seconds, the overall it/s and the median
it/s over consecutive windows of 20 iterations.

Test NLL: -mean log q(x) in nats over a fixed set of --test-points samples (drawn with its own
seed, --test-seed, whatever --seed is), with the model in eval mode, in batches of --eval-batch,
under torch.no_grad().  In eval mode normflows' Residual block computes the exact log-det of a
2-D block (the 2x2 Jacobian by autograd, under its own torch.enable_grad(), so no_grad outside is
fine), not the stochastic series used in training.  The training loss printed is NOT an NLL: with
reduce_memory=True its value is the Neumann-gradient surrogate, not the log-det.

Examples:

    ~/peers/bin/python bench/normflows_residual.py --seconds 300
    ~/peers/bin/python bench/normflows_residual.py --iters 2000 --eval-at 500,1000 --test-points 100000

Options: --iters (20000, the notebook's max_iter), --seconds (none; stops at whichever of the
two comes first), --threads (1, torch.set_num_threads), --seed (0), --test-points (100000),
--test-seed (1234), --eval-at (comma-separated iteration counts; the end is always evaluated),
--eval-batch (10000), --skip-eval, --data (twomoons | make-moons), --batch (512), --lr (3e-4).
The last line printed is one JSON object with all figures.

Skips with a message, exit status 0, when torch or normflows cannot be imported.
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"normflows_residual.py: PyTorch/numpy cannot be imported ({e}); skipping the normflows peer")
    sys.exit(0)

try:
    import normflows as nf
except ImportError as e:
    print(f"normflows_residual.py: normflows cannot be imported ({e}); skipping the normflows peer")
    sys.exit(0)

WINDOW = 20


def build_model():
    """normflows' residual example (examples/residual.ipynb), verbatim."""
    K = 16
    latent_size = 2
    hidden_units = 128
    hidden_layers = 3
    flows = []
    for _ in range(K):
        net = nf.nets.LipschitzMLP([latent_size] + [hidden_units] * (hidden_layers - 1) + [latent_size],
                                   init_zeros=True, lipschitz_const=0.9)
        flows += [nf.flows.Residual(net, reduce_memory=True)]
        flows += [nf.flows.ActNorm(latent_size)]
    q0 = nf.distributions.DiagGaussian(2, trainable=False)
    return nf.NormalizingFlow(q0=q0, flows=flows)


class Data:
    """Training/test data: normflows' TwoMoons (default) or the notebook's sklearn make_moons."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "twomoons":
            self.target = nf.distributions.TwoMoons()
            self.log_z = self._two_moons_log_z()
        else:
            try:
                from sklearn.datasets import make_moons
            except ImportError as e:
                sys.exit(f"normflows_residual.py: --data make-moons needs scikit-learn ({e})")
            self.make_moons = make_moons
            self.log_z = None

    def sample(self, n):
        if self.kind == "twomoons":
            return self.target.sample(n)
        x_np, _ = self.make_moons(n, noise=0.1)
        return torch.tensor(x_np).float()

    def _two_moons_log_z(self, n=2001):
        """log of the normaliser of TwoMoons.log_prob over the sampler's box [-3, 3]^2 (trapezoid rule;
        2001 and 4001 points agree to 1e-12)."""
        g = torch.linspace(-3.0, 3.0, n, dtype=torch.float64)
        h = 6.0 / (n - 1)
        w = torch.ones(n, dtype=torch.float64)
        w[0] = w[-1] = 0.5
        xx, yy = torch.meshgrid(g, g, indexing="ij")
        lp = self.target.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
        z = ((w[:, None] * w[None, :]).reshape(-1) * lp.exp()).sum() * h * h
        return math.log(z.item())

    def true_nll(self, x):
        """-mean log p(x) under the true density, or None when it is not known."""
        if self.log_z is None:
            return None
        return (-self.target.log_prob(x.double()).mean()).item() + self.log_z


def make_test_set(data, n, seed):
    """n test points drawn under their own seed; the global RNG states are restored afterwards."""
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    torch.manual_seed(seed)
    np.random.seed(seed)
    x = data.sample(n)
    torch.set_rng_state(torch_state)
    np.random.set_state(np_state)
    return x


def test_nll(model, x_test, batch):
    """Mean and standard error of -log q(x) in nats, exact 2-D log-det (eval mode), non-finite dropped."""
    was_training = model.training
    model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(x_test), batch):
            parts.append(-model.log_prob(x_test[i:i + batch].clone()).double())
    model.train(was_training)
    nll = torch.cat(parts)
    finite = torch.isfinite(nll)
    nll = nll[finite]
    m = nll.numel()
    mean = nll.mean().item() if m else float("nan")
    se = (nll.std(unbiased=True).item() / math.sqrt(m)) if m > 1 else float("nan")
    return mean, se, int(len(x_test) - m)


def finite_or_none(v):
    """The figures with every non-finite float replaced by None, so the JSON line is strict JSON."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: finite_or_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite_or_none(x) for x in v]
    return v


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=20000, help="most training iterations (notebook: 20000)")
    p.add_argument("--seconds", type=float, default=None, help="most seconds of training (clock paused for evaluation)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--test-points", type=int, default=100000)
    p.add_argument("--test-seed", type=int, default=1234)
    p.add_argument("--eval-at", type=str, default="",
                   help="comma-separated iteration counts at which to evaluate the test NLL (0 allowed)")
    p.add_argument("--eval-batch", type=int, default=10000)
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--data", choices=["twomoons", "make-moons"], default="twomoons")
    args = p.parse_args()
    eval_at = sorted({int(s) for s in args.eval_at.replace(" ", "").split(",") if s})

    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    data = Data(args.data)

    x_test, true_nll = None, None
    if not args.skip_eval:
        x_test = make_test_set(data, args.test_points, args.test_seed)
        true_nll = data.true_nll(x_test)
        if true_nll is not None:
            print(f"test set: {args.test_points} points (seed {args.test_seed}), true NLL {true_nll:.4f} nats")

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = build_model()
    # The notebook initialises ActNorm with one log_prob call on a data batch, in training mode.
    _ = model.log_prob(data.sample(args.batch))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)

    evals = []

    def evaluate(done, train_seconds):
        t0 = time.perf_counter()
        nll, se, dropped = test_nll(model, x_test, args.eval_batch)
        dt = time.perf_counter() - t0
        gap = nll - true_nll if true_nll is not None else None
        evals.append({"iter": done, "train_seconds": train_seconds, "test_nll": nll, "test_nll_se": se,
                      "gap_to_truth": gap, "nonfinite": dropped, "eval_seconds": dt})
        extra = f", gap {gap:+.4f}" if gap is not None else ""
        extra += f"; {dropped} non-finite dropped" if dropped else ""
        print(f"  iter {done}: test NLL {nll:.4f} (se {se:.4f}){extra} [eval {dt:.1f} s]", flush=True)

    if not args.skip_eval and 0 in eval_at:
        evaluate(0, 0.0)

    step_times = []
    skipped = 0
    losses = []
    train_seconds = 0.0
    done = 0
    while done < args.iters and (args.seconds is None or train_seconds < args.seconds):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        x = data.sample(args.batch)
        loss = model.forward_kld(x)
        if ~(torch.isnan(loss) | torch.isinf(loss)):
            loss.backward()
            optimizer.step()
        else:
            skipped += 1
        nf.utils.update_lipschitz(model, 50)
        losses.append(loss.item())
        dt = time.perf_counter() - t0
        step_times.append(dt)
        train_seconds += dt
        done += 1
        if done % 100 == 0:
            print(f"iter {done}: {train_seconds:.1f} s, {done / train_seconds:.2f} it/s, loss {losses[-1]:.4f}",
                  flush=True)
        if not args.skip_eval and done in eval_at:
            evaluate(done, train_seconds)

    rate = done / train_seconds if train_seconds > 0 else None
    windows = [WINDOW / sum(step_times[i:i + WINDOW])
               for i in range(0, len(step_times) - WINDOW + 1, WINDOW)]
    median_window = statistics.median(windows) if windows else None
    final_loss = losses[-1] if losses else None
    fmt = lambda v, spec: format(v, spec) if v is not None else "n/a"
    print(f"normflows residual flow on {args.data}, batch {args.batch}, torch threads {threads}: "
          f"{done} iterations in {train_seconds:.2f} s, {fmt(rate, '.2f')} it/s overall, "
          f"median {fmt(median_window, '.2f')} it/s over {len(windows)} windows of {WINDOW}"
          + (f"; {skipped} non-finite steps skipped" if skipped else ""))
    print(f"final training loss {fmt(final_loss, '.4f')} (Neumann surrogate, not an NLL)")

    if not args.skip_eval and (not evals or evals[-1]["iter"] != done):
        evaluate(done, train_seconds)
    if evals:
        e = evals[-1]
        print(f"test NLL: {e['test_nll']:.4f} (standard error {e['test_nll_se']:.4f}) nats over "
              f"{args.test_points} points after {e['iter']} iterations"
              + (f"; true NLL of the set {true_nll:.4f}" if true_nll is not None else ""))
    print(f"torch {torch.__version__}, normflows {nf.__version__}")

    print(json.dumps(finite_or_none({
        "library": "normflows",
        "flow": "residual",
        "dataset": args.data,
        "batch": args.batch,
        "lr": args.lr,
        "threads": threads,
        "seed": args.seed,
        "iters_requested": args.iters,
        "seconds_requested": args.seconds,
        "iters": done,
        "train_seconds": train_seconds,
        "it_per_s": rate,
        "median_window_it_per_s": median_window,
        "window": WINDOW,
        "windows": len(windows),
        "skipped_steps": skipped,
        "final_loss": final_loss,
        "test_points": 0 if args.skip_eval else args.test_points,
        "test_seed": args.test_seed,
        "test_true_nll": true_nll,
        "test_nll": evals[-1]["test_nll"] if evals else None,
        "test_nll_se": evals[-1]["test_nll_se"] if evals else None,
        "evals": evals,
        "torch_version": torch.__version__,
        "normflows_version": nf.__version__,
    })))


if __name__ == "__main__":
    main()
