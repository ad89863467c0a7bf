"""How long the per-request data-quality row check takes (30 features, in range).

Run: python benchmarks/bench_quality_row.py [--features 30] [--calls 20000]
Target: 5 µs per call (it runs once per answered instance).
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from nexus_ml.ml.profile import build_profile
from nexus_ml.stats.quality import QualityChecker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    names = [f"f{i}" for i in range(args.features)]
    ref = np.random.default_rng(0).uniform(-1.0, 1.0, size=(10_000, args.features))
    checker = QualityChecker.from_profile(build_profile(ref, names))
    row = np.random.default_rng(1).uniform(-0.9, 0.9, size=args.features).tolist()
    times = timeit.repeat(lambda: checker.check_row(row), number=args.calls, repeat=args.repeat)
    per_call = sorted(t / args.calls for t in times)
    print(
        f"check_row, {args.features} features: best {per_call[0] * 1e6:.2f} µs, "
        f"median {per_call[len(per_call) // 2] * 1e6:.2f} µs per call"
    )


if __name__ == "__main__":
    main()
