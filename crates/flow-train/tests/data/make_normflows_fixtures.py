"""Writes the small normflows fixtures that crates/flow-train/tests/import_variants.rs reads.

    python3 crates/flow-train/tests/data/make_normflows_fixtures.py   # needs torch, normflows, safetensors

Two RealNVPs with random (not zero-initialised) conditioners, built the way normflows'
examples build them, in odd and even dimensions, with shuffle permutations (stored by
normflows as int64 `perm` / `inv_perm` buffers) and a non-zero LeakyReLU slope. For each,
the state_dict and float64 reference values of log_prob on fixed points.
"""
import pathlib

import normflows as nf
import torch
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).parent


def build(dim, blocks, hidden, leaky, mode, seed):
    torch.manual_seed(seed)
    flows = []
    for _ in range(blocks):
        d1 = (dim + 1) // 2
        net = nf.nets.MLP([d1, *hidden, 2 * (dim - d1)], leaky=leaky, init_zeros=False)
        flows.append(nf.flows.AffineCouplingBlock(net))
        flows.append(nf.flows.Permute(dim, mode=mode))
    model = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(dim), flows)
    with torch.no_grad():
        model.q0.loc.normal_(0, 0.3)
        model.q0.log_scale.normal_(0, 0.2)
    return model


for name, dim, blocks, hidden, leaky, mode, seed in [
    ("shuffle3", 3, 3, [16, 16], 0.01, "shuffle", 1),
    ("shuffle6", 6, 2, [8], 0.2, "shuffle", 2),
]:
    model = build(dim, blocks, hidden, leaky, mode, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, HERE / f"normflows_{name}.safetensors", metadata={"leaky": str(leaky)})
    torch.manual_seed(100 + seed)
    x = torch.randn(40, dim, dtype=torch.float64) * 1.5
    model = model.double()
    with torch.no_grad():
        ref = {"x": x, "log_prob": model.log_prob(x)}
    save_file(ref, HERE / f"normflows_{name}.reference.safetensors")
    print(name, {k: tuple(v.shape) for k, v in state.items() if "perm" in k})
