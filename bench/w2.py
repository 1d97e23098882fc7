"""The 2-Wasserstein distance between two CSV point sets of equal size (header line, then one
row per point), with POT's exact emd on squared distances: torchcfm's `wasserstein`.

    ~/peers/bin/python bench/w2.py samples.csv data.csv
"""
import sys

import numpy as np
import ot

a = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
b = np.loadtxt(sys.argv[2], delimiter=",", skiprows=1)
n = min(len(a), len(b))
a, b = a[:n], b[:n]
w = np.ones(n) / n
print(f"{np.sqrt(ot.emd2(w, w, ot.dist(a, b), numItermax=10**7)):.4f}")
