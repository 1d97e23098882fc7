"""torchcfm peer of `flows train --flow cfm|otcfm`: flow matching on normflows' TwoMoons.

torchcfm's MLP(dim=2, w=64, time_varying=True) (3 hidden layers of 64, SELU, input [x, t]),
ConditionalFlowMatcher(sigma) or ExactOptimalTransportConditionalFlowMatcher(sigma), Adam
lr 1e-3, batch 256 of fresh TwoMoons samples and as many standard normal draws; the whole
step is timed (sampling, the transport plan, forward, backward, step). The trained field is
saved as safetensors, which `flows import-torchcfm` reads, so that both libraries' models
are scored by one likelihood computation (see bench/flow_matching.sh).

    ~/peers/bin/python bench/torchcfm_two_moons.py --matcher icfm --iters 3000 --out icfm.safetensors

Options: --matcher icfm|otcfm, --iters (3000), --batch (256), --sigma (0), --seed (0),
--threads (1), --data-out FILE (write N TwoMoons points as CSV and exit), --n.
Skips with a message, exit status 0, when torch, torchcfm or normflows cannot be imported.
"""
import argparse
import sys
import time

try:
    import torch
    import normflows as nf
    from safetensors.torch import save_file
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )
    from torchcfm.models.models import MLP
except ImportError as e:
    print(f"torchcfm_two_moons.py: {e}; skipping the torchcfm peer")
    sys.exit(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--matcher", choices=["icfm", "otcfm"], default="icfm")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sigma", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    p.add_argument("--data-out")
    p.add_argument("--n", type=int, default=20000)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    target = nf.distributions.TwoMoons()
    if a.data_out:
        x = target.sample(a.n).double().numpy()
        with open(a.data_out, "w") as f:
            f.write("x0,x1\n")
            for r in x:
                f.write(f"{float(r[0])!r},{float(r[1])!r}\n")
        return
    model = MLP(dim=2, w=64, time_varying=True)
    matcher = (ConditionalFlowMatcher if a.matcher == "icfm" else ExactOptimalTransportConditionalFlowMatcher)(sigma=a.sigma)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(a.iters):
        opt.zero_grad()
        x1 = target.sample(a.batch)
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        vt = model(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    print(f"torchcfm {a.matcher}: {a.iters} iterations in {seconds:.2f} s ({a.iters / seconds:.1f} it/s), final loss {loss.item():.4f}")
    if a.out:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.out,
                  metadata={"library": "torchcfm", "matcher": a.matcher, "iters": str(a.iters), "seed": str(a.seed)})


if __name__ == "__main__":
    main()
