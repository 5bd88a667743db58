#!/usr/bin/env python3
"""How tight is an instance? The smallest ``max_j margin_j`` a long attack finds, and exact
minima (MIP) over the open sub-boxes where the margin is smallest after a short branch and bound.

A property is violated where every margin is <= 0, so an unsat instance whose smallest
max-margin is ~1e-3 of the outputs' scale needs very small input boxes around that spot
before a linear relaxation proves it: this is what the instances our verifier left undecided
before warm-started alpha-CROWN had in common (docs/benchmark_acasxu.md). A positive
attack figure is no proof of safety: on 1_9 with property 7 it stayed at 5e-4 while the
property is violated in a sliver of the box (the verifier's screened restarts find it).

Example:
    .venv/bin/python scripts/acasxu_margin_probe.py ACASXU_run2a_3_3_batch_2000.onnx prop_2.vnnlib
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("acasxu_margin_probe")
sys.path.insert(0, str(REPO))

from meetup_ros.verification import bab, onnx_loader, vnnlib  # noqa: E402
from meetup_ros.verification.falsify import forward_layers, pgd_search, spec_layers  # noqa: E402
from meetup_ros.verification.mip import solve_min_max_margin  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("vnnlib")
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "acasxu")
    parser.add_argument("--samples", type=int, default=20000, help="attack starts")
    parser.add_argument("--steps", type=int, default=200, help="attack steps per start")
    parser.add_argument("--bab-s", type=float, default=20.0, help="branch and bound seconds")
    parser.add_argument("--boxes", type=int, default=3, help="open sub-boxes sent to the MIP")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    network = onnx_loader.load_onnx(args.root / args.onnx)
    prop = vnnlib.load_vnnlib(args.root / args.vnnlib)
    generator = torch.Generator().manual_seed(0)
    for i, d in enumerate(prop.disjuncts):
        layers = spec_layers(network, d.coeffs, d.rhs)
        lo, up = torch.as_tensor(d.lower), torch.as_tensor(d.upper)
        start = time.monotonic()
        _, attack = pgd_search(layers, lo, up, args.samples, args.steps, generator)
        logger.info("disjunct %d: smallest max-margin found by %d x %d PGD: %.6f (%.1f s)",
                    i, args.samples, args.steps, float(attack), time.monotonic() - start)
        out = bab.solve_disjunct(network, d.coeffs, d.rhs, d.lower, d.upper,
                                 time.monotonic() + args.bab_s)
        if out.frontier is None:
            logger.info("disjunct %d: branch and bound: %s in %d domains", i, out.status,
                        out.domains)
            continue
        f = out.frontier
        centre = forward_layers(layers, (f.lower + f.upper) / 2).max(-1).values
        for j in torch.argsort(centre)[: args.boxes].tolist():
            start = time.monotonic()
            exact = solve_min_max_margin(network, d.coeffs, d.rhs, f.lower[j].numpy(),
                                         f.upper[j].numpy(), time_limit_s=60.0)
            logger.info("disjunct %d: open box %d of %d: MIP %s, min max-margin >= %.6f (best "
                        "point %.6f), %.1f s", i, j, len(f), exact.status, exact.dual_bound,
                        exact.objective, time.monotonic() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
