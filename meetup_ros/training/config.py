"""The typed configuration that every ``meetup-ros train <network>`` run receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

OptimizerName = Literal["dfw", "sgd", "adam"]
OPTIMIZERS: tuple[str, ...] = ("dfw", "sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Args:
        bags: rosbag2 folders or files (sqlite3 or MCAP) to read the data from.
        out_dir: where checkpoints, ``metrics.csv`` and the exported weights go.
        optimizer: ``dfw`` (default), ``sgd`` or ``adam``.
        lr: the maximal step ``eta`` for DFW, the learning rate for SGD and Adam.
        epochs: passes over the training split.
        batch_size: samples per step (per process under DDP).
        seed: seeds torch, numpy and the data split.
        resume: continue from ``out_dir/checkpoint.pt`` if it exists.
        device: ``cpu`` or ``cuda[:N]``.
        export: also write the weights file the nodes load (``models/`` layout) into out_dir.
        extra: network-specific options from ``--set key=value``; each trainer rejects keys
            it does not know.
    """

    bags: tuple[Path, ...]
    out_dir: Path
    optimizer: OptimizerName = "dfw"
    lr: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    resume: bool = False
    device: str = "cpu"
    export: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if not self.bags:
            raise ValueError("at least one bag is needed (--bag PATH)")
        for name in ("lr", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
