"""PyTorch peer of `cargo bench -p flow-core --bench core`, on one thread, same shapes.

    python3 bench/torch_core.py     # needs torch; prints medians and GFLOP/s

Skips with a message when PyTorch is not installed.
"""
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("torch_core.py: PyTorch is not installed; skipping the PyTorch peer")
    sys.exit(0)

torch.set_num_threads(1)
torch.manual_seed(0)


def median_seconds(fn, min_time=3.0, batch=50):
    for _ in range(batch):
        fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


def report(name, seconds, flops):
    print(f"{name}: median {seconds * 1e6:.2f} us, {flops / seconds / 1e9:.1f} GFLOP/s")


a = torch.randn(512, 64)
b = torch.randn(64, 64)
report("torch matmul 512x64 @ 64x64 f32", median_seconds(lambda: a @ b), 2 * 512 * 64 * 64)

sizes = [1, 64, 64, 2]
layers = []
for i in range(3):
    layers += [torch.nn.Linear(sizes[i], sizes[i + 1])]
    if i < 2:
        layers += [torch.nn.ReLU()]
net = torch.nn.Sequential(*layers)
x = torch.randn(512, 1)
y = torch.randn(512, 2)


def step():
    net.zero_grad(set_to_none=True)
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()


flops = sum(2 * 512 * sizes[i] * sizes[i + 1] * (2 if i == 0 else 3) for i in range(3))
report("torch MLP 1-64-64-2 batch 512 fwd+bwd f32", median_seconds(step), flops)
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
