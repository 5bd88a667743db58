#!/usr/bin/env python3
"""How far can a step go with the directions it is given: oracle line searches on two-view pairs.

The learned SLAM step scales and bends Gauss-Newton's step; this asks how few iterations
any such rule could need, by cheating: at every iteration it tries each candidate direction
at each of a few lengths, evaluates the true (fine) photometric error at all of them, and
keeps the best (a greedy oracle; a learned step evaluates no candidates). Counted as in
``meetup-ros benchmark-slam``: iterations to reach plain GN's final error within 0.5 %,
20 at most, the same seeded starts. Candidate sets:

- ``gn``: the fine GN step at 7 lengths (0.5-6);
- ``gn+coarse``: the same plus the GN step of the half-resolution level
  (``TwoViewProblem.coarse``, blurred by ``--blur`` of its pixels);
- ``gn+coarse unit``: the fine and the coarse GN step at length 1 only.

Measured on 2026-12-05: on pairs 4-7, the first look, with the coarse level blurred 0.8 px:
gn 0.44 of GN's iterations (the learned step without the coarse level reached 0.43),
gn+coarse 0.34, gn+coarse unit 0.41; that is why the learned step reads the coarse level.
Its blur was then chosen on pairs 0-3: gn+coarse 0.33 at 0.8 px, 0.30 at 1.2, 0.27 at 1.6,
0.24 at 2.2, 0.14 at 3.0, 0.14 at 4.0, 0.15 at 6.0 (gn alone 0.48).

On the held-out EuRoC stereo pairs (``--group stereo``, 2026-12-06): plain GN needs 29
iterations over the 10 pairs (2-4 each), the oracle 27 (0.93) with or without the coarse
level, and never 1: no length of GN's first step reaches GN's final error (a finer scan of
57 lengths in 0.2-3 reached it on 1 pair of 10). A step built from these directions cannot
get to a third of GN's iterations on these pairs, where a third is under one iteration.

On pairs 4-7 at the learned step's blur of 3 px (``--group untouched``, 2026-12-06): gn 0.44,
gn+coarse 0.33, gn+coarse unit 0.46 of GN's 204 iterations; on the four TUM pairs alone
(GN 57) gn needs 39, gn+coarse 44 and gn+coarse unit 66 (three pairs not reached): there
the long valley is the fine level's own and the coarse step leads off it. The shipped
learned step needs 40 there (``meetup-ros benchmark-slam``'s ``per_pair``), the pyramid
step 64: the oracle's greedy ceiling, which a learned step could only pass by a path that
rises first, is at two thirds of GN's iterations on those pairs.

Example:
    .venv/bin/python scripts/slam_direction_ceiling.py --group held --blur 3.0
    .venv/bin/python scripts/slam_direction_ceiling.py --group stereo
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meetup_ros.slam import data as slam_data  # noqa: E402
from meetup_ros.slam.benchmark import (  # noqa: E402
    BenchmarkConfig,
    iterations_to_reach,
    start_point,
)
from meetup_ros.slam.depth_code import DepthCodeModel  # noqa: E402
from meetup_ros.slam.learned import LearnedStepConfig  # noqa: E402
from meetup_ros.slam.solvers import (  # noqa: E402
    TwoViewProblem,
    gauss_newton,
    make_problem,
)

logger = logging.getLogger("slam_direction_ceiling")

LENGTHS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
GROUPS = {  # (first pair, pairs per sequence), as benchmark-slam's groups
    "held": (0, slam_data.MONO_HELD_OUT_PAIRS),
    "untouched": (slam_data.MONO_HELD_OUT_PAIRS, slam_data.MONO_TRAIN_FROM
                  - slam_data.MONO_HELD_OUT_PAIRS),
    "late": (slam_data.MONO_LATE_FROM, slam_data.MONO_LATE_PAIRS),
}


def oracle(problem: TwoViewProblem, levels: list[TwoViewProblem], x0: torch.Tensor,
           lengths: tuple[float, ...], iterations: int) -> list[float]:
    """Errors of the greedy oracle: each iteration keeps the best candidate step."""
    x = x0.clone()
    errors = [problem.error(x)]
    for _ in range(iterations):
        candidates = []
        for level in levels:
            d = level.normal_equations(x).gn_step()
            candidates += [a * d for a in lengths]
        scored = [(problem.error(x + c), i) for i, c in enumerate(candidates)]
        best, index = min(scored, key=lambda s: s[0])
        x = x + candidates[index]
        errors.append(best)
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", choices=sorted((*GROUPS, "stereo")), default="held",
                    help="monocular pairs (KITTI/TUM) or, stereo, the benchmark's held-out "
                         "EuRoC stereo pairs of --bag (pose prior as the benchmark's)")
    ap.add_argument("--bag", default=str(REPO / "data" / "euroc_v1_01_easy_sample"))
    ap.add_argument("--blur", type=float, default=LearnedStepConfig().pyramid_blur_px,
                    help="blur of the coarse level, in its pixels (the learned step's default)")
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--depth-weights", default=str(REPO / "models" / "depth_code.pt"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    model = DepthCodeModel.from_weights(args.depth_weights)
    cfg = BenchmarkConfig()
    if args.group == "stereo":
        pairs = slam_data.euroc_split(slam_data.euroc_stereo_pairs(
            Path(args.bag), model.cfg.height, model.cfg.width, 1), 2)[1]
        weight = cfg.stereo_pose_prior_weight
    else:
        first, limit = GROUPS[args.group]
        pairs = slam_data.mono_pose_pairs(Path(args.data_root), model.cfg.height,
                                          model.cfg.width, limit=limit, first=first)
        weight = cfg.mono_pose_prior_weight
    rng = np.random.default_rng(cfg.seed)
    names = ("gn", "gn+coarse", "gn+coarse unit")
    totals = dict.fromkeys(("plain gn", *names), 0)
    logger.info("%-28s %8s %s", "pair", "plain gn", " ".join(f"{n:>14s}" for n in names))
    for pair in pairs:
        problem = make_problem(model.net, pair.image_a, pair.image_b, pair.K, pair.T_b_a,
                               pose_prior_weight=weight, K_b=pair.K_b)
        x0 = start_point(problem, pair.T_b_a, rng, cfg)
        gn = gauss_newton(problem, x0, cfg.max_iterations)
        target = gn.errors[-1]
        coarse = problem.coarse(2, args.blur)
        counts = {"plain gn": iterations_to_reach(gn, target, cfg.tolerance,
                                                  cfg.max_iterations)[0]}
        for name, levels, lengths in (("gn", [problem], LENGTHS),
                                      ("gn+coarse", [problem, coarse], LENGTHS),
                                      ("gn+coarse unit", [problem, coarse], (1.0,))):
            errors = oracle(problem, levels, x0, lengths, cfg.max_iterations)
            counts[name] = next((i for i, e in enumerate(errors)
                                 if e <= target * (1 + cfg.tolerance)), cfg.max_iterations)
        for name, n in counts.items():
            totals[name] += n
        logger.info("%-28s %8d %s", pair.name, counts["plain gn"],
                    " ".join(f"{counts[n]:14d}" for n in names))
    base = max(totals["plain gn"], 1)
    logger.info("%-28s %8d %s", "sum (ratio to plain GN)", totals["plain gn"],
                " ".join(f"{totals[n]:8d} ({totals[n] / base:.2f})" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
