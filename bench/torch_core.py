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

# The rational-quadratic spline of `spline_*` (8 bins on [-5, 5], 512 x 2 entries, inputs
# uniform on [-5.5, 5.5], unit-normal parameters): zuko's MonotonicRQSTransform, when zuko is
# installed.
try:
    from zuko.transforms import MonotonicRQSTransform
except ImportError:
    MonotonicRQSTransform = None
    print("torch_core.py: zuko is not installed; skipping the spline peer")

if MonotonicRQSTransform is not None:
    bins = 8
    xs = torch.rand(512, 2) * 11.0 - 5.5
    raw = torch.randn(512, 2, 3 * bins - 1)

    def spline(x, raw):
        widths, heights, derivatives = raw[..., :bins], raw[..., bins:2 * bins], raw[..., 2 * bins:]
        return MonotonicRQSTransform(widths, heights, derivatives, bound=5.0).call_and_ladj(x)

    def spline_forward():
        with torch.no_grad():
            spline(xs, raw)

    def spline_backward():
        x, r = xs.clone().requires_grad_(), raw.clone().requires_grad_()
        y, ladj = spline(x, r)
        (y.sum() + ladj.sum()).backward()

    entries = xs.numel()
    for name, fn in [("forward", spline_forward), ("forward + backward", spline_backward)]:
        seconds = median_seconds(fn)
        print(f"zuko spline 512x2 8 bins {name}: median {seconds * 1e6:.1f} us, "
              f"{entries / seconds / 1e6:.2f} M entries/s")

print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
