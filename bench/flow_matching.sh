#!/bin/bash
# Flow matching side by side with torchcfm on normflows' TwoMoons (BENCHMARKS.md):
# speed of the whole training step, then both trained models scored by the same computation
# (torchcfm's imported with `flows import-torchcfm`): exact test NLL on 20,000 TwoMoons
# points (dopri5 at 1e-5) and the 2-Wasserstein distance of 2,000 samples to 2,000 of them.
#   bench/flow_matching.sh [ITERS] [SEEDS...]      (defaults: 3000, seeds 0 1)
#   KINDS=otcfm bench/flow_matching.sh 3000 2 3 4  (one matcher only; default "icfm otcfm")
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-3000}; shift || true
seeds=${*:-0 1}
py=${PYTHON:-$HOME/peers/bin/python}
flows=${FLOWS:-./target/release/flows}
work=${WORK:-/tmp/flow-matching-bench}
mkdir -p "$work"
$py bench/torchcfm_two_moons.py --data-out "$work/test.csv" --n 20000 --seed 123
head -2001 "$work/test.csv" > "$work/w2-data.csv"
for seed in $seeds; do
  for kind in ${KINDS:-icfm otcfm}; do
    flow=$([ $kind = icfm ] && echo cfm || echo otcfm)
    $py bench/torchcfm_two_moons.py --matcher $kind --iters "$iters" --seed "$seed" --out "$work/torchcfm-$kind-$seed.safetensors"
    $flows import-torchcfm "$work/torchcfm-$kind-$seed.safetensors" --out "$work/torchcfm-$kind-$seed.ckpt" > /dev/null
    $flows train --flow $flow --iters "$iters" --seed "$seed" --out "$work/flows-$kind-$seed" \
      --test-samples 2 --validation-samples 2 --snapshots 0 --quiet | grep "it/s" | sed "s/^/flows $kind: /"
    for who in torchcfm flows; do
      ckpt=$([ $who = torchcfm ] && echo "$work/torchcfm-$kind-$seed.ckpt" || echo "$work/flows-$kind-$seed/checkpoint.safetensors")
      nll=$($flows eval --checkpoint "$ckpt" --data "$work/test.csv" | sed 's/test NLL: \([0-9.]*\).*/\1/')
      $flows sample --checkpoint "$ckpt" -n 2000 --seed 7 --out "$work/$who-$kind-$seed.csv" > /dev/null
      w2=$($py bench/w2.py "$work/$who-$kind-$seed.csv" "$work/w2-data.csv")
      echo "$who $kind seed $seed: test NLL $nll, W2 $w2"
    done
  done
done
