"""The typed configuration that every ``meetup-ros train <network>`` run receives."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

OptimizerName = Literal["dfw", "sgd", "adam"]
OPTIMIZERS: tuple[str, ...] = ("dfw", "sgd", "adam")
T = TypeVar("T")
FLOAT32_MAX = 3.4028234663852886e38
# numpy's legacy seeding (np.random.seed, used by the depth and optimizer trainers) takes
# 0 .. 2**32 - 1; torch and default_rng take more, so this is the range every trainer accepts
SEED_MAX = 2**32 - 1
# the devices a training run can use: torch also parses meta, mps, xla, ..., which failed
# with a traceback after the bag was read (meta after creating metrics.csv)
_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")

logger = logging.getLogger(__name__)


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
        init_weights: a weights file of the same network to start from (fine-tuning the
            deployed network on new recordings) instead of a random initialisation; the
            network's shape comes from the file. ``resume`` still wins when a checkpoint exists.
        extra: network-specific options from ``--set key=value``; each trainer rejects keys
            it does not know.
        given: which of ``lr``, ``momentum``, ``weight_decay`` the command line set; on
            ``resume`` only these replace the checkpoint's values (a bare ``--resume`` after
            ``--lr 0.0003`` went on at the default 0.001). None: all of them, as a config
            built in code asks for what it holds.
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
    init_weights: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    given: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if not self.bags:
            raise ValueError("at least one bag is needed (--bag PATH)")
        for name in ("lr", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value!r}")
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        check_seed(self.seed)
        check_device(self.device)
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if value is not None and value > FLOAT32_MAX:
                # the weights are float32: torch's update raised "value cannot be converted
                # to type float without overflow" (a traceback) at the first step
                raise ValueError(f"{name} must be at most {FLOAT32_MAX:.7g} (the largest "
                                 f"float32), got {value!r}")


def check_seed(seed: object, name: str = "seed") -> None:
    """Refuse a seed outside 0 .. :data:`SEED_MAX` (``name``: what to call it, e.g. the
    option ``--seed``); -1 failed in numpy ("expected non-negative integer") after the bag
    was read, without naming the option."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} {seed!r}: expected an integer in [0, {SEED_MAX}]")


def check_device(device: object, name: str = "device") -> None:
    """Refuse a device other than ``cpu``, ``cuda`` or ``cuda:N`` (``name`` as for
    :func:`check_seed`). Whether CUDA is there is checked where torch is imported."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"{name} {device!r}: expected cpu, cuda or cuda:N (training runs on "
                         "the CPU or a CUDA GPU)")


def parse_options(
    cls: type[T], extra: dict[str, str], *, owner: str, error: type[Exception] = ValueError
) -> T:
    """Build a trainer's options dataclass from ``--set key=value`` strings.

    Each value is converted to its field's type (int, float, bool or str; ``X | None``
    converts as ``X``, its default ``None`` meaning "not given"). Where ``cls`` has a
    ``ranges()`` method (``(key, in range, expected)`` per option), the values are checked
    against it (:func:`check_ranges`), defaults included, before any data is read.

    Raises:
        error: a key ``cls`` does not declare, a value that does not convert or one out of
            its range; the message names ``owner`` (e.g. ``controller``), the key and the
            value.
    """
    types = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(extra) - set(types))
    if unknown:
        raise error(f"unknown {owner} option(s) {unknown!r}; known: {sorted(types)!r}")
    values: dict[str, Any] = {}
    for key, text in extra.items():
        kind = {"int": int, "float": float, "bool": bool}.get(_type_name(types[key]), str)
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                values[key] = text.lower() in ("true", "1")
            else:
                values[key] = kind(text)
        except ValueError:
            raise error(
                f"{owner} option --set {key}={text!r} is not of type {kind.__name__}"
            ) from None
        if kind is float and not math.isfinite(values[key]):
            # "inf" and "nan" parse as floats, then fail far from the option (a timeout of
            # inf overflowed inside the verifier after the whole training run)
            raise error(f"{owner} option --set {key}={text!r} is not a finite number")
    options = cls(**values)
    ranges = getattr(options, "ranges", None)
    if ranges is not None:
        check_ranges(options, ranges(), error=error)
    return options


def _type_name(annotation: Any) -> str:
    """``int`` for ``int``, ``"int"`` and ``"int | None"`` (modules with ``from __future__
    import annotations`` give the field types as strings)."""
    name = getattr(annotation, "__name__", None) or str(annotation)
    return name.replace(" ", "").removesuffix("|None")


def check_ranges(options: object, checks: Iterable[tuple[str, bool, str]], *,
                 error: type[Exception] = ValueError) -> None:
    """Refuse the first option outside its range, before any data is read.

    ``checks`` holds ``(key, ok, expected)`` per option (``ok`` already evaluated on the
    parsed value); the message is ``--set KEY=VALUE: expected EXPECTED``. Values caught only
    where they are used failed deep inside numpy, torch or the data loading, some after
    minutes, without naming the option.

    Raises:
        error: for the first check whose ``ok`` is false.
    """
    for key, ok, expected in checks:
        if not ok:
            raise error(f"--set {key}={getattr(options, key)!r}: expected {expected}")


def warn_ignored_sizes(init: Path, extra: dict[str, str], asked: dict[str, Any],
                       used: dict[str, Any]) -> None:
    """With ``--init`` the weights file's sizes win: a size given with ``--set`` that differs
    (``asked`` vs the file's ``used``) is said in a warning, not ignored silently."""
    ignored = {k: v for k, v in asked.items() if k in extra and v != used[k]}
    if ignored:
        logger.warning("--set %s ignored: the network's shape comes from --init %s (%s)",
                       ", ".join(f"{k}={v}" for k, v in ignored.items()), init,
                       ", ".join(f"{k}={used[k]}" for k in ignored))
