#!/usr/bin/env python3
"""What slam_node's `iterations` and `tolerance` cost and buy, on every stereo pair of a bag.

Runs the SLAM frontend alone (no ROS, one thread) on each pair as a keyframe, once per
(iterations, tolerance) setting, and prints the mean iterations a keyframe took, its time
(p50 / p99) and the depth's AbsRel against SGBM (all pairs, and the held-out ones from
``EUROC_HELD_OUT_FROM`` on). On 2026-12-06, the bundled bag's 95 pairs: 5 iterations with
tolerance 0 took 49.6 / 59.7 ms p50 / p99 (AbsRel 0.0858, held-out 0.0760); with tolerance
0.001, slam_node's default, 3.44 iterations on average and 40.5 / 47.7 ms (0.0891, 0.0772);
3 iterations always, 38.1 / 42.9 ms (0.0901, 0.0813).

Example:
    .venv/bin/python scripts/slam_keyframe_cost.py --settings 5:0 5:0.001 3:0
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

from meetup_ros.bags.reader import read_sequence  # noqa: E402
from meetup_ros.slam import data as slam_data  # noqa: E402
from meetup_ros.slam.evaluation import depth_metrics  # noqa: E402
from meetup_ros.slam.frontend import SlamFrontend  # noqa: E402
from meetup_ros.slam.stereo import stereo_depth  # noqa: E402

logger = logging.getLogger("slam_keyframe_cost")


def setting(text: str) -> tuple[int, float]:
    iterations, _, tolerance = text.partition(":")
    try:
        return int(iterations), float(tolerance or 0.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ITERATIONS:TOLERANCE, e.g. 5:0.001") from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bag", default=str(REPO / "data" / "euroc_v1_01_easy_sample"))
    ap.add_argument("--depth-weights", default=str(REPO / "models" / "depth_code.pt"))
    ap.add_argument("--optimizer-weights", default=str(REPO / "models" / "slam_optimizer.pt"))
    ap.add_argument("--settings", nargs="+", type=setting, default=[(5, 0.0), (5, 1e-3)],
                    metavar="ITERATIONS:TOLERANCE")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    seq = read_sequence(Path(args.bag))
    slam_data.check_stereo(seq)
    frames = slam_data.stereo_frame_pairs(seq)
    references = {}
    for iterations, tolerance in args.settings:
        fe = SlamFrontend.from_weights(
            args.depth_weights, args.optimizer_weights, seq.cam0.info, seq.cam1.info,
            seq.T_cam0_cam1, keyframe_every_n=1, iterations=iterations, tolerance=tolerance)
        counts, ms, absrel, held = [], [], [], []
        for i, j in frames:
            kf = fe.process(int(seq.cam0.stamps_ns[i]), seq.cam0.images[i], seq.cam1.images[j])
            if kf is None:
                continue
            if i not in references:
                references[i] = stereo_depth(seq.cam0.images[i], seq.cam1.images[j],
                                             seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1)
            rel = depth_metrics(kf.depth_m, references[i])["absrel"]
            counts.append(kf.iterations)
            ms.append(kf.elapsed_s * 1e3)
            absrel.append(rel)
            if i >= slam_data.EUROC_HELD_OUT_FROM:
                held.append(rel)
        warm = ms[5:] or ms  # the first keyframes warm the caches up
        logger.info("iterations %d tolerance %g: %.2f iterations on average over %d pairs, "
                    "%.1f / %.1f ms p50 / p99, AbsRel %.4f (held-out %.4f)", iterations,
                    tolerance, np.mean(counts), len(counts), np.percentile(warm, 50),
                    np.percentile(warm, 99), np.mean(absrel),
                    np.mean(held) if held else float("nan"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
