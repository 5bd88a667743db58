"""``meetup-ros train vio|depth|optimizer|controller``: retrain a network from bags.

Works the same under ``torchrun --nproc_per_node N -m meetup_ros.cli train ...`` (data
parallel, gloo on CPU, nccl on CUDA; only rank 0 writes files).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from pathlib import Path
from typing import Any

from meetup_ros.cli import CommandError, check_out_dir, set_torch_threads

logger = logging.getLogger(__name__)

#: network -> (module, function) of the trainer, each ``(TrainConfig) -> dict[str, float]``.
TRAINERS: dict[str, tuple[str, str]] = {
    "vio": ("meetup_ros.odometry.training", "train_vio"),
    "depth": ("meetup_ros.slam.training", "train_depth"),
    "optimizer": ("meetup_ros.slam.training", "train_optimizer"),
    "controller": ("meetup_ros.control.training", "train_controller"),
}


def register(subparsers: Any) -> None:
    """Add ``train`` to the ``meetup-ros`` parser."""
    p = subparsers.add_parser(
        "train", help="retrain a network from rosbag2 recordings (DFW by default)",
        description="Retrain one network from bags; writes OUT/checkpoint.pt, OUT/metrics.csv "
                    "and the weights file the nodes load. Under torchrun the run is data "
                    "parallel.")
    p.add_argument("network", choices=sorted(TRAINERS), help="which network to train")
    p.add_argument("--bag", action="append", required=True, metavar="BAG",
                   help="rosbag2 folder or file (sqlite3 or MCAP); repeat for several")
    p.add_argument("--optimizer", choices=("dfw", "sgd", "adam"), default="dfw")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer's")
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None,
                   help="DFW's maximal step eta, or SGD/Adam's learning rate")
    # None when not given: a --resume then keeps the checkpoint's value (see TrainConfig.given)
    p.add_argument("--momentum", type=float, default=None, help="default 0.9 (not for Adam)")
    p.add_argument("--weight-decay", type=float, default=None, help="default 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these weights (fine-tune; vio, depth, optimizer)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--no-export", action="store_true", help="skip the weights file")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="network-specific option (repeatable); unknown keys are rejected")
    p.set_defaults(func=_train)


def parse_set(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; raises CommandError on bad items."""
    extra: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set expects KEY=VALUE, got {item!r}")
        if key.strip() in extra:
            raise CommandError(f"--set gives {key.strip()!r} twice")
        extra[key.strip()] = value.strip()
    return extra


def _resolve_bag(text: str) -> Path:
    path = Path(text)
    if path.exists():
        return path
    from meetup_ros import paths

    # bare names refer to the bundled data folder (data/euroc_v1_01_easy_sample)
    candidate = Path(paths.__file__).resolve().parent.parent / "data" / text
    if candidate.exists():
        return candidate
    also = "" if candidate.resolve() == path.resolve() else f" (also looked at {str(candidate)!r})"
    raise CommandError(f"bag {text!r} not found{also}")


#: networks whose every step trains on one sample whatever --batch-size says, and why: a
#: tester's `train optimizer --batch-size 8` was logged as "batch 8" and ran one per step
ONE_SAMPLE_PER_STEP: dict[str, str] = {
    "optimizer": "each step unrolls the learned step on one two-view problem",
}


def _check_batch_size(network: str, batch_size: int | None) -> None:
    reason = ONE_SAMPLE_PER_STEP.get(network)
    if reason is not None and batch_size not in (None, 1):
        raise CommandError(f"--batch-size {batch_size!r}: expected 1 (or none) for train "
                           f"{network}: {reason}")


#: the files a run writes into --out besides checkpoint.pt and metrics.csv (with export)
EXPORTS: dict[str, str] = {"vio": "vio.pt", "depth": "depth_code.pt",
                           "optimizer": "slam_optimizer.pt", "controller": "governor.onnx"}


def _check_outputs(out_dir: Path, network: str, export: bool) -> None:
    """Refuse an --out where a file the run writes exists as something other than a file (a
    folder): found at the write, it was an IsADirectoryError traceback after the training,
    and a checkpoint.pt folder made --resume say "no checkpoint, starting from scratch"."""
    from meetup_ros.training.loop import output_not_a_file

    name = output_not_a_file(out_dir, [EXPORTS[network]] if export else [])
    if name is not None:
        raise CommandError(f"--out {str(out_dir)!r}: {name} there is not a file (a "
                           "folder?); the run writes it: move it away or choose another "
                           "--out")


def load_trainer(network: str) -> Any:
    """Import the trainer function for ``network``; CommandError if it is not there yet."""
    module_name, func_name = TRAINERS[network]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CommandError(f"trainer for {network!r} is not available: module "
                               f"{module_name!r} is missing") from exc
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise CommandError(f"trainer for {network!r} is not available: {module_name!r} has no "
                           f"{func_name!r}")
    return func


def _train(args: argparse.Namespace) -> int:
    import json

    from meetup_ros.training.config import check_device, check_seed

    try:
        # named as options, before torch is imported and any bag is read
        check_seed(args.seed, "--seed")
        check_device(args.device, "--device")
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if args.optimizer in ("dfw", "sgd") and args.momentum is not None and args.momentum >= 1:
        # DFW refused it only once the bag was read; SGD's buffer would never decay
        raise CommandError(f"--momentum {args.momentum!r}: expected a value in [0, 1) for "
                           f"--optimizer {args.optimizer}")
    _check_batch_size(args.network, args.batch_size)
    set_torch_threads(args.threads)

    import torch

    from meetup_ros import paths
    from meetup_ros.training.config import TrainConfig

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {args.device!r} asked for, but CUDA is not available")
    index = args.device.partition(":")[2]
    if args.device.startswith("cuda") and index and int(index) >= torch.cuda.device_count():
        raise CommandError(f"--device {args.device!r}: this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s), cuda:0 .. "
                           f"cuda:{torch.cuda.device_count() - 1}")
    # only what the command line sets: TrainConfig's defaults for the rest, and on --resume
    # the checkpoint's
    given = {name: getattr(args, name) for name in ("lr", "momentum", "weight_decay")
             if getattr(args, name) is not None}
    try:
        cfg = TrainConfig(
            bags=tuple(_resolve_bag(b) for b in args.bag), out_dir=Path(args.out),
            optimizer=args.optimizer, epochs=args.epochs, batch_size=args.batch_size,
            **given, given=frozenset(given), seed=args.seed, resume=args.resume,
            device=args.device, export=not args.no_export, extra=parse_set(args.set),
            init_weights=paths.model_path(args.init) if args.init else None,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    trainer = load_trainer(args.network)
    check_out_dir(cfg.out_dir)
    _check_outputs(cfg.out_dir, args.network, cfg.export)
    rank = int(os.environ.get("RANK", "0"))
    logger.info("train %s from %s with %s into %s", args.network,
                [str(b) for b in cfg.bags], cfg.optimizer, cfg.out_dir)
    from meetup_ros.bags.errors import BagError
    from meetup_ros.odometry.windowing import OdometryError
    from meetup_ros.training.checkpoint import CheckpointError
    from meetup_ros.training.loop import TrainingError

    try:
        metrics = trainer(cfg)
    except (BagError, CheckpointError, OdometryError, TrainingError, ValueError, KeyError,
            FileNotFoundError) as exc:
        # unusable bags, unreadable or mismatched checkpoints and weights, unknown --set keys
        # or values out of range, a non-finite loss: exit 2 with one line (TrainingError was
        # a traceback with exit 1, the code that says "governor not proven")
        raise CommandError(f"train {args.network}: {exc}") from exc
    if rank == 0:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        from meetup_ros.evaluation.jsonsafe import finite_json

        print(json.dumps(finite_json(metrics), indent=2, default=str))
    # A network whose safety property was not proven is written (to inspect), but the run
    # fails, so that no script (make retrain) takes it for a deployable one.
    unproven = sorted(k.removesuffix("_proven") for k, v in metrics.items()
                      if k.endswith("_proven") and v != 1.0)
    if unproven:
        skipped = (" (the proof of the exported network was skipped: --set verify_timeout_s=0)"
                   if metrics.get("verify_skipped") == 1.0 else "")
        logger.error("train %s: the exported network is NOT proven safe on %s (1 = proven, "
                     "0 = counterexample, -1 = undecided: %s)%s; do not deploy it",
                     args.network, unproven, {k: metrics[f"{k}_proven"] for k in unproven},
                     skipped)
        return 1
    return 0
