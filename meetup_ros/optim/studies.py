"""DFW studies on real data; each writes ``results.csv``, ``results.md`` and a PNG plot.

- :func:`optimizer_study`: DFW without a schedule vs SGD with a step schedule vs Adam on
  MNIST (the 10k t10k images, split 8k train / 2k test by a fixed permutation) and
  scikit-learn's digits (1797 images, split 80/20 the same way). Each optimizer's learning
  rate is picked from a small grid on a validation split carved from the *training* part
  (last 15 %), then it is trained on the full training part with several seeds and scored on
  the test part, which no choice ever looked at. Every run goes through
  :func:`meetup_ros.training.loop.fit`.
- :func:`batch_size_study`: test accuracy of DFW and SGD for batch sizes 16..1024 at a fixed
  number of epochs and a fixed learning rate.
- :func:`iteration_cost_study`: seconds per training iteration (zero_grad, forward, backward,
  step) of DFW over SGD with momentum and weight decay on a 784-512-512-10 MLP at batch 256,
  both timed in one process with interleaved repetitions (the order alternates).

The spread over seeds, ``test_accuracy_sample_std``, is the sample standard deviation
(ddof 1); it is undefined (NaN) for a single seed.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import logging
import statistics
import struct
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from meetup_ros.evaluation import plots
from meetup_ros.optim.dfw import DFW
from meetup_ros.optim.losses import MultiClassHingeLoss

logger = logging.getLogger(__name__)

DATASETS = ("mnist", "digits")
SPLIT_SEED = 1234  # the one permutation every split uses
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_CLASSES = 10
STD_COLUMN = "test_accuracy_sample_std"
STD_NOTE = (f"{STD_COLUMN}: sample standard deviation over seeds (ddof 1); nan with one "
            "seed.")


class StudyError(ValueError):
    """A study got an unusable argument or data folder."""


def check_positive(name: str, values: int | Sequence[int]) -> None:
    """Refuse an integer setting (or any of a list of them) below 1, naming it as ``name``.

    Zero epochs, seeds, batch, hidden units, repetitions or iterations ended in a traceback
    deep in torch or statistics (or, from the command line, silently ran the default).
    """
    items = [values] if isinstance(values, int) else list(values)
    if not items:
        raise StudyError(f"{name}: no value given; expected at least one integer >= 1")
    for value in items:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StudyError(f"{name} {value!r}: expected an integer >= 1")


def check_device(device: str, name: str = "device") -> torch.device:
    """The torch device ``device`` names, refused (as ``name``) unless it is a CPU or an
    available CUDA device: a bad name was torch's RuntimeError traceback, and other backends
    (meta, mps) would time something other than the CPU or GPU work."""
    expected = "expected cpu, cuda or cuda:N"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise StudyError(f"{name} {device!r}: not a torch device; {expected}") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise StudyError(f"{name} {device!r}: CUDA is not available; expected cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise StudyError(f"{name} {device!r}: this machine has {count} CUDA device(s); "
                             f"expected an index below {count}")
    elif parsed.type != "cpu":
        raise StudyError(f"{name} {device!r}: {expected}")
    return parsed


def _check_seeds(seeds: Sequence[int]) -> None:
    """Any integer is a seed, but none at all left nothing to average (NaN rows)."""
    if len(seeds) == 0:
        raise StudyError("seeds: none given; expected at least one seed")


def _sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1): with 2-3 seeds the population std (ddof 0)
    understates the spread by 18-29 %; one seed has no spread to estimate (NaN)."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


# ---- data ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Split:
    """Features (N, D) float32 in [0, 1] and labels (N,) int64 for train and test."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    def validation(self, fraction: float = 0.15) -> Split:
        """Train on the first part of the training split, test on its last ``fraction``."""
        n_val = round(len(self.train_x) * fraction)
        return Split(f"{self.name}-val", self.train_x[:-n_val], self.train_y[:-n_val],
                     self.train_x[-n_val:], self.train_y[-n_val:])


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of its stored shape."""
    gzipped = str(path).endswith(".gz")
    opener: Any = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise StudyError(f"IDX file {str(path)!r} not found") from exc
    except (OSError, EOFError, zlib.error) as exc:
        # a cut-short download ends early (EOFError), a file that is not gzip is
        # BadGzipFile (an OSError), damaged deflate data is zlib.error
        raise StudyError(f"IDX file {str(path)!r}: cannot be read ({exc}); expected a "
                         f"complete {'gzipped ' if gzipped else ''}IDX file") from exc
    if len(data) < 4:
        raise StudyError(f"IDX file {str(path)!r}: {len(data)} bytes; expected at least the "
                         "4-byte IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise StudyError(f"IDX file {str(path)!r}: expected unsigned-byte data, got header "
                         f"{data[:4]!r}")
    if len(data) < 4 + 4 * ndim:
        raise StudyError(f"IDX file {str(path)!r}: {len(data)} bytes; expected at least the "
                         f"{4 + 4 * ndim}-byte header of {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise StudyError(f"IDX file {str(path)!r}: {array.size} values for shape {shape!r}")
    return array.reshape(shape)


MNIST_MIN_IMAGES = 4000


def _split(name: str, x: np.ndarray, y: np.ndarray, n_test: int) -> Split:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x, y = x[order], y[order]
    return Split(name, x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:])


def load_dataset(name: str, mnist_dir: Path | None = None) -> Split:
    """``mnist`` (8000/2000 of the t10k images) or ``digits`` (1437/360)."""
    if name == "mnist":
        if mnist_dir is None or not Path(mnist_dir).is_dir():
            raise StudyError(f"MNIST folder {str(mnist_dir)!r} not found (expected the t10k "
                             "IDX files, e.g. ../shared/data/mnist_t10k)")
        images, labels = _read_mnist(Path(mnist_dir))
        if len(images) < MNIST_MIN_IMAGES:
            # well-formed but small: the 2000-image test split ended in a ValueError traceback
            raise StudyError(f"MNIST folder {str(mnist_dir)!r} holds {len(images)} images; "
                             f"expected at least {MNIST_MIN_IMAGES} (the study tests on 2000 "
                             "and trains on the rest: the t10k set has 10000)")
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return _split("mnist", x, labels.astype(np.int64), n_test=2000)
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.data.astype(np.float32) / 16.0
        return _split("digits", x, digits.target.astype(np.int64), n_test=360)
    raise StudyError(f"dataset {name!r} is not one of {DATASETS}")


def _read_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The t10k images (N, rows, cols) and labels (N,), checked against each other: a short
    labels file was an IndexError and a label >= 10 a RuntimeError mid-training."""
    images_path, labels_path = folder / MNIST_IMAGES, folder / MNIST_LABELS
    missing = [p.name for p in (images_path, labels_path) if not p.is_file()]
    if missing:
        raise StudyError(f"MNIST folder {str(folder)!r}: no {' or '.join(missing)} (expected "
                         "the t10k IDX files, e.g. ../shared/data/mnist_t10k)")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise StudyError(f"IDX file {str(images_path)!r}: shape {images.shape}; expected "
                         "images of shape (N, rows, columns)")
    if labels.ndim != 1:
        raise StudyError(f"IDX file {str(labels_path)!r}: shape {labels.shape}; expected "
                         "labels of shape (N,)")
    if len(labels) != len(images):
        raise StudyError(f"IDX file {str(labels_path)!r}: {len(labels)} labels for the "
                         f"{len(images)} images of {images_path.name}; expected one per image")
    bad = np.flatnonzero(labels >= MNIST_CLASSES)
    if bad.size:
        raise StudyError(f"IDX file {str(labels_path)!r}: label {int(labels[bad[0]])} at "
                         f"index {int(bad[0])} ({bad.size} such); expected digit classes "
                         f"0-{MNIST_CLASSES - 1}")
    return images, labels


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """ReLU MLP with the given layer sizes (input first, classes last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# ---- one run through the project's training loop -------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    seed: int
    weight_decay: float
    hidden: tuple[int, ...]


def train_once(split: Split, spec: RunSpec, out_dir: Path) -> dict[str, Any]:
    """Train an MLP with ``fit`` and return its final metrics plus the per-epoch curve.

    DFW trains on the smoothed multi-class hinge (the loss it is exact for); SGD and Adam on
    cross-entropy, their usual loss. Accuracy is what is compared.
    """
    from meetup_ros.training.config import TrainConfig
    from meetup_ros.training.loop import fit
    from meetup_ros.training.metrics import read_metrics

    torch.manual_seed(spec.seed)
    model = mlp((split.train_x.shape[1], *spec.hidden, int(split.train_y.max()) + 1))
    loss_fn: nn.Module = (MultiClassHingeLoss(smoothing=DFW_SMOOTHING) if spec.optimizer == "dfw"
                          else nn.CrossEntropyLoss())
    cfg = TrainConfig(bags=(Path("-"),), out_dir=out_dir,
                      optimizer=spec.optimizer,  # type: ignore[arg-type]  # checked by TrainConfig
                      lr=spec.lr, epochs=spec.epochs, batch_size=spec.batch_size,
                      seed=spec.seed, weight_decay=spec.weight_decay)
    train = TensorDataset(torch.from_numpy(split.train_x), torch.from_numpy(split.train_y))
    test = TensorDataset(torch.from_numpy(split.test_x), torch.from_numpy(split.test_y))
    t0 = time.perf_counter()
    metrics = fit(cfg, model, train, test, loss_fn)
    rows = read_metrics(out_dir / "metrics.csv")
    return {"accuracy": metrics["eval_accuracy"], "train_loss": metrics["train_loss"],
            "curve": [r["eval_accuracy"] for r in rows], "time_s": time.perf_counter() - t0}


# ---- (a) optimizers ------------------------------------------------------------------------

LR_GRIDS = {"dfw": (0.03, 0.1, 0.3, 1.0), "sgd": (0.03, 0.1, 0.3, 1.0),
            "adam": (3e-4, 1e-3, 3e-3, 1e-2)}
#: smoothing of the hinge DFW trains on, chosen on the MNIST validation split (eta 0.1:
#: 0 -> 94.8 %, 0.05 -> 94.9 %, 0.5 -> 95.8 %, 1 -> 95.4 %)
DFW_SMOOTHING = 0.5


def optimizer_study(out_dir: Path, *, datasets: Sequence[str] = DATASETS,
                    mnist_dir: Path | None = None, seeds: Sequence[int] = (0, 1, 2),
                    epochs: int = 12, batch_size: int = 64, weight_decay: float = 1e-4,
                    hidden: tuple[int, ...] = (128,),
                    lr_grids: dict[str, Sequence[float]] | None = None) -> list[dict[str, Any]]:
    """DFW (no schedule) vs SGD (step schedule) vs Adam; returns one row per dataset x optimizer.

    Writes ``out_dir/results.{csv,md}`` and ``out_dir/optimizers.png`` (test accuracy per
    epoch, mean over seeds).
    """
    _check_seeds(seeds)
    check_positive("epochs", epochs)
    check_positive("batch_size", batch_size)
    check_positive("hidden", hidden)
    grids = dict(LR_GRIDS if lr_grids is None else lr_grids)
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], list[float]] = {}
    # every data set is read (and checked) before any training, so a damaged MNIST folder
    # is not found only after the digits runs
    splits = {name: load_dataset(name, mnist_dir) for name in datasets}
    for name, split in splits.items():
        val = split.validation()
        for optimizer, grid in grids.items():
            # learning rate chosen on the validation part of the training split, seed 0
            val_acc = {}
            for lr in grid:
                spec = RunSpec(optimizer, lr, epochs, batch_size, 0, weight_decay, hidden)
                result = train_once(val, spec, out_dir / "runs" / name / f"val_{optimizer}_{lr:g}")
                val_acc[lr] = result["accuracy"]
                logger.info("%s %s lr=%g: validation accuracy %.4f", name, optimizer, lr,
                            result["accuracy"])
            best_lr = max(grid, key=lambda lr: (val_acc[lr], -lr))
            accs, times, seed_curves = [], [], []
            for seed in seeds:
                spec = RunSpec(optimizer, best_lr, epochs, batch_size, seed, weight_decay,
                               hidden)
                result = train_once(split, spec,
                                    out_dir / "runs" / name / f"test_{optimizer}_s{seed}")
                accs.append(result["accuracy"])
                times.append(result["time_s"])
                seed_curves.append(result["curve"])
            curves[(name, optimizer)] = list(np.mean(seed_curves, axis=0))
            rows.append({
                "dataset": name, "optimizer": optimizer,
                "schedule": "step /10 at 50%,75%" if optimizer == "sgd" else "none",
                "lr": best_lr, "val_accuracy": val_acc[best_lr],
                "test_accuracy_mean": float(np.mean(accs)),
                STD_COLUMN: _sample_std(accs),
                "seeds": len(seeds), "epochs": epochs, "batch_size": batch_size,
                "time_s_per_run": float(np.mean(times)),
            })
            logger.info("%s %s (lr %g): test accuracy %.4f +- %.4f", name, optimizer, best_lr,
                        rows[-1]["test_accuracy_mean"], rows[-1][STD_COLUMN])
    _write_table(out_dir, rows, "DFW (no schedule) vs SGD (step schedule) vs Adam",
                 ["dataset", "optimizer", "schedule", "lr", "val_accuracy",
                  "test_accuracy_mean", STD_COLUMN, "seeds", "epochs", "batch_size",
                  "time_s_per_run"], note=STD_NOTE)
    _plot_curves(out_dir / "optimizers.png", curves, datasets)
    return rows


# ---- (b) batch size ------------------------------------------------------------------------

def batch_size_study(out_dir: Path, *, dataset: str = "mnist", mnist_dir: Path | None = None,
                     batch_sizes: Sequence[int] = (16, 64, 256, 1024),
                     optimizers: Sequence[str] = ("dfw", "sgd"), seeds: Sequence[int] = (0,),
                     epochs: int = 10, lrs: dict[str, float] | None = None,
                     weight_decay: float = 1e-4,
                     hidden: tuple[int, ...] = (128,)) -> list[dict[str, Any]]:
    """Test accuracy per batch size for DFW and SGD at a fixed lr and number of epochs."""
    check_positive("batch_sizes", batch_sizes)
    _check_seeds(seeds)
    check_positive("epochs", epochs)
    check_positive("hidden", hidden)
    lrs = {"dfw": 0.1, "sgd": 0.1, "adam": 1e-3, **(lrs or {})}
    split = load_dataset(dataset, mnist_dir)
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    # time_s of whichever run came first carried ~0.9 s of one-time start-up (torch's first
    # calls, the loop's machinery): 1.3 s for a run that takes 0.06 s once warm. One tiny
    # untimed run per optimizer, in a scratch folder, takes that cost out of every timed row
    warm = Split("warm-up", split.train_x[:64], split.train_y[:64], split.test_x[:32],
                 split.test_y[:32])
    with tempfile.TemporaryDirectory(prefix="study-warm-up-") as scratch:
        for optimizer in optimizers:
            train_once(warm, RunSpec(optimizer, lrs[optimizer], 1, 16, 0, weight_decay,
                                     hidden), Path(scratch) / optimizer)
    for optimizer in optimizers:
        for batch_size in batch_sizes:
            accs = []
            t0 = time.perf_counter()
            for seed in seeds:
                spec = RunSpec(optimizer, lrs[optimizer], epochs, batch_size, seed,
                               weight_decay, hidden)
                accs.append(train_once(split, spec, out_dir / "runs" /
                                       f"{optimizer}_b{batch_size}_s{seed}")["accuracy"])
            rows.append({"dataset": dataset, "optimizer": optimizer, "batch_size": batch_size,
                         "lr": lrs[optimizer], "epochs": epochs,
                         "steps": epochs * -(-len(split.train_x) // batch_size),
                         "test_accuracy_mean": float(np.mean(accs)),
                         STD_COLUMN: _sample_std(accs), "seeds": len(seeds),
                         "time_s": time.perf_counter() - t0})
            logger.info("batch %d %s: test accuracy %.4f", batch_size, optimizer,
                        rows[-1]["test_accuracy_mean"])
    _write_table(out_dir, rows, f"Batch-size sweep on {dataset} (fixed lr and epochs)",
                 ["dataset", "optimizer", "batch_size", "lr", "epochs", "steps",
                  "test_accuracy_mean", STD_COLUMN, "seeds", "time_s"],
                 note=f"{STD_NOTE} time_s: all seeds of the row, after an untimed warm-up.")
    _plot_batch_sizes(out_dir / "batch_size.png", rows, optimizers)
    return rows


# ---- (c) iteration cost --------------------------------------------------------------------

def iteration_cost_study(out_dir: Path, *, sizes: Sequence[int] = (784, 512, 512, 10),
                         batch_size: int = 256, repetitions: int = 15, iterations: int = 10,
                         momentum: float = 0.9, weight_decay: float = 5e-4,
                         device: str = "cpu") -> list[dict[str, Any]]:
    """Seconds per iteration (zero_grad, forward, backward, step) of SGD and DFW, interleaved.

    Both use the same model architecture, the same batch and the same loss (multi-class
    hinge), so the difference is the optimizer. Also timed: SGD with Nesterov momentum (the
    form of momentum DFW uses) and DFW's per-tensor (non-foreach) kernels. Each repetition
    times ``iterations`` iterations of every variant, in an order that rotates between
    repetitions; the table gives medians over repetitions, their ratio to SGD, the median of
    the per-repetition (paired) ratios and the ratio of the fastest repetitions.
    """
    check_positive("sizes", sizes)
    check_positive("batch_size", batch_size)
    check_positive("repetitions", repetitions)
    check_positive("iterations", iterations)
    torch_device = check_device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, sizes[0], generator=g).to(torch_device)
    y = torch.randint(0, sizes[-1], (batch_size,), generator=g).to(torch_device)
    loss_fn = MultiClassHingeLoss()

    def make(kind: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = mlp(sizes).to(torch_device)
        opt: torch.optim.Optimizer
        if kind.startswith("sgd"):
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum,
                                  weight_decay=weight_decay, nesterov=kind == "sgd_nesterov")
        else:
            opt = DFW(model.parameters(), eta=0.01, momentum=momentum,
                      weight_decay=weight_decay, foreach=kind == "dfw")
        return model, opt

    variants = {kind: make(kind) for kind in ("sgd", "dfw", "sgd_nesterov", "dfw_per_tensor")}

    def run(kind: str, n: int) -> float:
        model, opt = variants[kind]

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        if torch_device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            opt.step(closure)  # type: ignore[arg-type]
        if torch_device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n

    for kind in variants:  # warm-up: allocations, momentum buffers
        run(kind, 2)
    times: dict[str, list[float]] = {kind: [] for kind in variants}
    order = list(variants)
    for rep in range(repetitions):
        for kind in order[rep % len(order):] + order[:rep % len(order)]:
            times[kind].append(run(kind, iterations))
    sgd_median = statistics.median(times["sgd"])
    rows = []
    for kind, values in times.items():
        median = statistics.median(values)
        # paired: the ratio within each repetition, so slow phases of a shared CPU cancel
        paired = statistics.median(v / s for v, s in zip(values, times["sgd"], strict=True))
        rows.append({"optimizer": kind, "median_ms": 1e3 * median,
                     "min_ms": 1e3 * min(values), "max_ms": 1e3 * max(values),
                     "ratio_to_sgd": median / sgd_median, "paired_ratio_to_sgd": paired,
                     "min_ratio_to_sgd": min(values) / min(times["sgd"]),
                     "model": "-".join(map(str, sizes)), "batch_size": batch_size,
                     "repetitions": repetitions, "iterations": iterations,
                     "threads": torch.get_num_threads(), "device": device})
        logger.info("%s: %.2f ms per iteration (x%.3f SGD)", kind, 1e3 * median,
                    median / sgd_median)
    _write_table(Path(out_dir), rows, "Cost of one training iteration (forward, backward, step)",
                 ["optimizer", "median_ms", "min_ms", "max_ms", "ratio_to_sgd",
                  "paired_ratio_to_sgd", "min_ratio_to_sgd", "model",
                  "batch_size", "repetitions", "iterations", "threads", "device"])
    _plot_costs(Path(out_dir) / "iteration_cost.png", times)
    return rows


# ---- output --------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_table(out_dir: Path, rows: list[dict[str, Any]], title: str,
                 columns: list[str], note: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", *([note, ""] if note else []),
             "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")


def _plot_curves(path: Path, curves: dict[tuple[str, str], list[float]],
                 datasets: Sequence[str]) -> None:
    fig = plots.figure((5 * len(datasets), 3.6))
    axes = fig.subplots(1, len(datasets), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        for (dataset, optimizer), curve in curves.items():
            if dataset == name:
                ax.plot(range(1, len(curve) + 1), curve, marker=".", label=optimizer)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
    plots.save(fig, path)


def _plot_batch_sizes(path: Path, rows: list[dict[str, Any]],
                      optimizers: Sequence[str]) -> None:
    fig = plots.figure((5, 3.6))
    ax = fig.subplots()
    for optimizer in optimizers:
        sel = [r for r in rows if r["optimizer"] == optimizer]
        ax.errorbar([r["batch_size"] for r in sel], [r["test_accuracy_mean"] for r in sel],
                    yerr=[r[STD_COLUMN] for r in sel], marker="o", label=optimizer,
                    capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, path)


def _plot_costs(path: Path, times: dict[str, list[float]]) -> None:
    fig = plots.figure((5, 3.6))
    ax = fig.subplots()
    ax.boxplot([[1e3 * t for t in v] for v in times.values()])
    ax.set_xticks(range(1, len(times) + 1), list(times))
    ax.set_ylabel("ms per iteration")
    ax.grid(alpha=0.3, axis="y")
    plots.save(fig, path)
