"""Odometry commands: evaluate-vio (EuRoC, vs dead reckoning), evaluate-visual (KITTI, TUM)."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from meetup_ros.cli import CommandError, check_out_dir, set_torch_threads

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the odometry subcommands to the ``meetup-ros`` parser."""
    p = subparsers.add_parser(
        "evaluate-vio",
        help="score the VIO on a EuRoC bag: at rest with images, held-out flight inertial-only",
    )
    p.add_argument("--bag", nargs="+", default=["data/euroc_v1_01_easy_sample"],
                   help="rosbag2 folder(s) (data/ if relative and not found); the full-flight "
                        "bag from import-euroc --imu-margin-s 200 adds the in-motion score")
    p.add_argument("--weights", default="models/vio.pt", help="VIO weights (models/ if relative)")
    p.add_argument("--out", default="out/vio", help="folder for JSON, TUM files and plots")
    p.add_argument("--heldout-s", type=float, default=None,
                   help="held-out flight length (s) when the weights do not record it "
                        "(default 30; weights that record their held-out start are scored "
                        "on exactly the samples they never trained on)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(func=_evaluate_vio)

    p = subparsers.add_parser(
        "evaluate-visual",
        help="learned monocular step length (a flow CNN trained here, leave-one-out) vs a "
             "classical OpenCV baseline on KITTI and TUM frames",
        description="Monocular visual odometry on KITTI 06, a KITTI turn and TUM fr3 office: "
                    "a small CNN over the optical flow (FlowScaleNet) regresses each step's "
                    "length and the essential matrix gives its rotation and direction, against "
                    "ORB + essential matrix with unit steps; Sim(3)-aligned ATE. The CNN is "
                    "trained by this command, for each sequence on the other two only; no "
                    "weights file is read (the VIO weights never saw moving images).",
    )
    p.add_argument("--data-root", default="../shared/data", help="folder with the sequences")
    p.add_argument("--out", default="out/visual", help="folder for JSON, TUM files and plots")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(func=_evaluate_visual)


def _weights(name: str) -> Path:
    """The --weights file, loaded once here so that a bad one is named on its own: refused
    inside the scoring, it read "bag '...': cannot score the VIO: weights file ..." (the bag
    was fine), and a folder was "not found" (a tester's finding)."""
    from meetup_ros import paths
    from meetup_ros.odometry.estimator import VioEstimator
    from meetup_ros.odometry.windowing import OdometryError

    path = paths.model_path(name)
    if path.is_dir():
        raise CommandError(f"--weights {name!r}: {str(path)!r} is a folder; expected a "
                           "weights file (e.g. models/vio.pt)")
    if not path.is_file():
        raise CommandError(f"weights {name!r} not found (looked at {str(path)!r}); "
                           "train them with `meetup-ros train vio`")
    try:
        VioEstimator.from_weights(path)
    except OdometryError as exc:
        raise CommandError(str(exc)) from None  # names the file
    return path


def _evaluate_vio(args: argparse.Namespace) -> int:

    from meetup_ros import paths
    from meetup_ros.bags import BagError
    from meetup_ros.odometry.evaluation import evaluate_vio
    from meetup_ros.odometry.windowing import OdometryError

    set_torch_threads(args.threads)
    if args.heldout_s is not None and not (math.isfinite(args.heldout_s) and args.heldout_s > 0):
        # nan crashed at the first use; a negative length gave no held-out score, silently
        raise CommandError(f"--heldout-s {args.heldout_s!r}: expected a length in seconds > 0")
    check_out_dir(Path(args.out))
    bags = [paths.data_path(b) for b in args.bag]
    weights = _weights(args.weights)
    try:
        report = evaluate_vio(bags, weights, args.out, heldout_s=args.heldout_s)
    except (OdometryError, BagError) as exc:
        raise CommandError(str(exc)) from None
    _print(report)
    print(f"wrote {Path(args.out) / 'vio_report.json'}")
    return 0


def _evaluate_visual(args: argparse.Namespace) -> int:
    from meetup_ros import paths
    from meetup_ros.evaluation.datasets import DatasetError
    from meetup_ros.odometry.visual_baseline import evaluate_visual
    from meetup_ros.odometry.windowing import OdometryError

    set_torch_threads(args.threads)
    check_out_dir(Path(args.out))
    try:
        report = evaluate_visual(paths.shared_data_path(args.data_root), Path(args.out))
    except (OdometryError, DatasetError) as exc:
        raise CommandError(str(exc)) from None
    _print(report)
    print(f"wrote {Path(args.out) / 'visual_report.json'}")
    return 0


def _print(report: dict[str, Any]) -> None:
    from meetup_ros.evaluation.jsonsafe import finite_json

    print(json.dumps(finite_json(report), indent=2, default=float))
