#!/bin/bash
# A/B of two flows binaries, alternated: /tmp/flows-base (built at the commit before a change)
# and /tmp/flows-new (after it), three rounds of `flows bench --repeats 3` for each flow.
for flow in realnvp maf nsf; do
  for round in 1 2 3; do
    for bin in base new; do
      out=$(/tmp/flows-$bin bench --flow $flow --iters 1000 --repeats 3 2>&1 | grep -iE "median|it/s" | tail -1)
      echo "$flow round $round $bin: $out"
    done
  done
done
