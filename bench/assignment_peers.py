"""Times the exact assignment solvers of the Python peers on OT-CFM's costs (squared distances
between a standard normal batch of 256 points and one shifted by (1, 0)): SciPy's
linear_sum_assignment and POT's emd, which torchcfm's OT plan calls. Ours on the same kind of
matrix: `cargo run --release -p flow-layers --example assignment_timing -- 256`.

    ~/peers/bin/python bench/assignment_peers.py
"""
import time, numpy as np, ot
from scipy.optimize import linear_sum_assignment
for n in (256,):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, 2)); b = rng.standard_normal((n, 2)) + [1.0, 0.0]
    M = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    w = np.full(n, 1.0 / n)
    for name, f in [("scipy linear_sum_assignment", lambda: linear_sum_assignment(M)),
                    ("POT emd (torchcfm's plan)", lambda: ot.emd(w, w, M))]:
        f(); reps = 200; ts = []
        for _ in range(reps):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        ts.sort(); print(f"n={n} {name}: median {ts[reps//2]*1e3:.3f} ms")
