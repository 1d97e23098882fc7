"""normflows peer of `flows bench` on real data: a RealNVP on wine-quality or Fashion-MNIST.

The same architecture `flows` builds (AffineCouplingBlocks whose MLP conditioners map the
first ceil(D/2) features to scale and shift of the rest, each followed by a Permute, a
DiagGaussian base), trained with Adam (weight decay 1e-5) on minibatches drawn from passes
over the training rows in random order, timed over the training loop only: batch gathering,
preprocessing (standardisation, or dequantisation and the logit transform for images),
forward_kld, backward and the Adam step. Reports iterations per second.

    ./target/release/flows bench --dataset wine-quality --transforms 6 --permute shuffle \
        --batch 256 --iters 2000 --repeats 3
    /tmp/peers/bin/python bench/normflows_real_data.py --dataset wine-quality --transforms 6 \
        --batch 256 --iters 2000 --repeats 3

    ./target/release/flows bench --dataset fashion-mnist --limit 10000 --transforms 4 \
        --hidden 256,256 --permute shuffle --batch 64 --iters 300 --repeats 3
    /tmp/peers/bin/python bench/normflows_real_data.py --dataset fashion-mnist --limit 10000 \
        --transforms 4 --hidden 256 --batch 64 --iters 300 --repeats 3

The wine table is read from crates/flow-datasets/data/winequality-red.csv.gz, the images from
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). Skips with a message, exit
status 0, when torch or normflows cannot be imported.
"""
import argparse
import gzip
import os
import struct
import sys
import time

try:
    import torch
    import normflows as nf
except ImportError as e:
    print(f"normflows_real_data.py: {e}; skipping the normflows peer")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wine():
    path = os.path.join(ROOT, "crates/flow-datasets/data/winequality-red.csv.gz")
    with gzip.open(path, "rt") as f:
        lines = [l.strip() for l in f if l.strip()]
    rows = [[float(c) for c in l.replace(";", ",").split(",")] for l in lines[1:]]
    x = torch.tensor(rows, dtype=torch.float32)[:, :11]
    return x


def fashion(limit):
    path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    assert magic == 0x803
    x = torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).reshape(n, h * w)
    return x[:limit].to(torch.float32)


def build(dim, transforms, hidden):
    d1 = (dim + 1) // 2
    flows = []
    for _ in range(transforms):
        net = nf.nets.MLP([d1] + hidden + [2 * (dim - d1)], init_zeros=True)
        flows.append(nf.flows.AffineCouplingBlock(net))
        flows.append(nf.flows.Permute(dim, mode="shuffle"))
    return nf.NormalizingFlow(nf.distributions.base.DiagGaussian(dim), flows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="wine-quality", choices=["wine-quality", "fashion-mnist"])
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--transforms", type=int, default=6)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = args.dataset == "fashion-mnist"
    x = fashion(args.limit) if images else wine()
    n, dim = x.shape
    train = x[: int(0.8 * n)]
    if not images:
        mean, std = train.mean(0), train.std(0, unbiased=False)
    alpha = 1e-6
    hidden = args.hidden if len(args.hidden) > 1 else args.hidden * 2
    rates = []
    for r in range(args.repeats):
        torch.manual_seed(r)
        model = build(dim, args.transforms, hidden)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-5)
        order, pos = torch.randperm(len(train)), 0
        start = time.perf_counter()
        for _ in range(args.iters):
            if pos + args.batch > len(train):
                order, pos = torch.randperm(len(train)), 0
            batch = train[order[pos: pos + args.batch]]
            pos += args.batch
            if images:
                s = alpha + (1 - 2 * alpha) * (batch + torch.rand_like(batch)) / 256
                batch = torch.log(s) - torch.log1p(-s)
            else:
                batch = (batch - mean) / std
            opt.zero_grad()
            loss = model.forward_kld(batch)
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
        seconds = time.perf_counter() - start
        rates.append(args.iters / seconds)
        print(f"run {r + 1}: {args.iters} iterations in {seconds:.3f} s, "
              f"{args.iters / seconds:.1f} it/s (final loss {loss.item():.4f})")
    rates.sort()
    params = sum(p.numel() for p in model.parameters())
    print(f"normflows realnvp ({params} parameters) on {args.dataset}, batch {args.batch}: "
          f"median {rates[len(rates) // 2]:.1f} it/s over {len(rates)} runs "
          f"({args.threads} thread{'s' if args.threads > 1 else ''})")


if __name__ == "__main__":
    main()
