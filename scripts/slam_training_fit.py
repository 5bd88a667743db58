#!/usr/bin/env python3
"""How well a learned SLAM step fits its own monocular training pairs.

The benchmark (``meetup-ros benchmark-slam``) scores held-out pairs; this runs the same
comparison (``slam.benchmark.solver_comparison``: seeded starts, iterations to Gauss-Newton's
final error within 0.5 %) on the pairs the step trained on (``MONO_TRAIN_FROM`` on, 12 per
sequence), one sequence at a time. A step slow on pairs it was trained on is under-fitted
there, not failing to generalise: on 2026-12-05 the pyramid step needed 0.37 of GN's
iterations on the TUM training pairs (53 vs 143, one pair not reached) and on KITTI
sequence 2's (80 vs 216, two not reached), 0.17 on KITTI sequence 1's (33 vs 194); neither
wider training pairs, a wider LSTM nor a late-weighted loss changed the TUM figure.

Example:
    .venv/bin/python scripts/slam_training_fit.py \
        --optimizer-weights models/slam_optimizer_pyramid.pt
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meetup_ros.slam import data as slam_data  # noqa: E402
from meetup_ros.slam.benchmark import solver_comparison  # noqa: E402
from meetup_ros.slam.depth_code import DepthCodeModel  # noqa: E402
from meetup_ros.slam.learned import LearnedStep  # noqa: E402

logger = logging.getLogger("slam_training_fit")
SEQUENCES = ("KITTI_sequence_1", "KITTI_sequence_2", "tum")  # pair-name prefixes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer-weights", default=str(REPO / "models" / "slam_optimizer.pt"))
    ap.add_argument("--depth-weights", default=str(REPO / "models" / "depth_code.pt"))
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    model = DepthCodeModel.from_weights(args.depth_weights)
    step = LearnedStep.from_weights(args.optimizer_weights)
    pairs = slam_data.mono_pose_pairs(Path(args.data_root), model.cfg.height, model.cfg.width,
                                      limit=12, first=slam_data.MONO_TRAIN_FROM)
    for sequence in SEQUENCES:
        group = [p for p in pairs if p.name.startswith(sequence)]
        if not group:
            logger.warning("%s: no training pairs under %s", sequence, args.data_root)
            continue
        out = solver_comparison(group, model, step)
        for row in out["per_pair"]:
            logger.info("  %-28s GN %2d  learned %2d%s", row["pair"],
                        row["gauss_newton"]["iterations"], row["learned"]["iterations"],
                        "" if row["learned"]["reached"] else " (not reached)")
        logger.info("%s: %d training pairs, learned %d vs GN %d iterations (%.2f), %d not "
                    "reached", sequence, len(group), out["learned_iterations"],
                    out["gn_iterations"], out["learned_over_gn_iterations"],
                    out["learned_not_reached"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
