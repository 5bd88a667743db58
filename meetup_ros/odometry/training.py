"""Train the multi-rate VIO network on real EuRoC bags (``meetup-ros train vio``).

Data: the bag(s) given (the full-flight bag made by ``meetup-ros import-euroc`` with a large
``--imu-margin-s``, or the bundled 4.7 s sample). Intervals are cut as in
:mod:`meetup_ros.odometry.dataset`: with images for the first 4.75 s (the vehicle at rest),
inertial-only at 20 Hz afterwards.

Never trained on (stated in the weights' metadata and the returned metrics): every interval
that ends after ``heldout_start_ns = last IMU stamp - heldout_s`` (default: the last 30 s of
the recording, the held-out flight segment scored by ``meetup-ros evaluate-vio``). The
``val_s`` seconds before it are the validation split, also never trained on.

Optimiser: ``cfg.optimizer`` through ``training.loop.fit`` (DFW by default, eta 0.001). The
shipped ``models/vio.pt`` was trained with ``optimizer="adam"`` (lr 2e-3, no weight decay,
30 epochs, seed 0): measured on the validation split, DFW at eta 0.001 plateaued at a train
L1 of 0.34 and a validation velocity error of 0.50 m/s after 12 epochs (Adam: 0.19 and
0.37 m/s after 30), and eta 0.005 did not converge (train L1 0.58 after 4 epochs).

Loss (piecewise linear, suited to DFW): the L1 error of the se(3) increment, per component
scaled by 1 cm and 0.1 deg, plus 0.1 times the L1 error of the predicted log-scale against the
log of the (detached) absolute error, which trains the uncertainty without a negative term.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from meetup_ros.odometry.dataset import (
    Intervals,
    build_intervals,
    check_groundtruth_stamps,
    drop_repeated_frames,
    frame_stamps,
    select,
)
from meetup_ros.odometry.model import MODEL_NAME, VioNet, VioNetConfig
from meetup_ros.odometry.windowing import NS_PER_S, OdometryError
from meetup_ros.training.config import (
    TrainConfig,
    parse_options,
    warn_ignored_sizes,
)
from meetup_ros.training.distributed import is_main_process

logger = logging.getLogger(__name__)

XI_SCALE = torch.tensor([0.01, 0.01, 0.01, 0.00175, 0.00175, 0.00175])
VELOCITY_LOSS_SCALE_MPS = 0.05
# DFW's eta (its largest step), SGD's and Adam's learning rates
DEFAULT_LR = {"dfw": 0.001, "sgd": 0.001, "adam": 2e-3}
# --set keys that size the network; with --init the weights file's sizes are used instead
ARCHITECTURE_KEYS = ("imu_hidden", "core_hidden", "image_channels")


@dataclass(frozen=True)
class VioTrainOptions:
    """Options from ``--set key=value`` (unknown keys are rejected)."""

    chunk: int = 100  # intervals per training sequence (5 s)
    heldout_s: float = 30.0
    val_s: float = 15.0
    rest_fraction: float = 0.3  # share of chunks drawn from the image (rest) window
    attitude_noise_deg: float = 2.0  # roll/pitch perturbation of the physics features
    steps_per_epoch: int = 25
    image_weight: float = 5.0  # loss weight of intervals with images (at rest)
    image_dropout: float = 0.5  # share of chunks whose images are masked (inertial-only)
    imu_hidden: int = 32
    core_hidden: int = 32
    image_channels: int = 16

    @classmethod
    def from_extra(cls, extra: dict[str, str]) -> VioTrainOptions:
        """The options, each checked against its range before any bag is read (testers'
        ``chunk=0`` was an IndexError, ``rest_fraction=2`` a broadcast error, and
        ``heldout_s=-1`` or ``image_dropout=1.5`` trained without a word).

        Raises:
            OdometryError: naming the ``--set`` key, its value and the range expected.
        """
        return parse_options(cls, extra, owner="vio", error=OdometryError)

    def ranges(self) -> tuple[tuple[str, bool, str], ...]:
        """``(key, in range, expected)`` per option, checked by ``parse_options``."""
        return (
            ("chunk", self.chunk >= 1, "an integer >= 1 (intervals per sequence)"),
            ("heldout_s", self.heldout_s >= 0.0, "seconds >= 0"),
            ("val_s", self.val_s >= 0.0, "seconds >= 0"),
            ("rest_fraction", 0.0 <= self.rest_fraction <= 1.0, "a fraction in [0, 1]"),
            ("attitude_noise_deg", self.attitude_noise_deg >= 0.0, "degrees >= 0"),
            ("steps_per_epoch", self.steps_per_epoch >= 1, "an integer >= 1"),
            # the weights are normalised by their batch mean: a batch of image intervals
            # only, at weight 0, divides by 0; a negative one made the loss negative or NaN
            ("image_weight", self.image_weight > 0.0, "a loss weight > 0"),
            ("image_dropout", 0.0 <= self.image_dropout <= 1.0, "a fraction in [0, 1]"),
            ("imu_hidden", self.imu_hidden >= 1, "an integer >= 1"),
            ("core_hidden", self.core_hidden >= 1, "an integer >= 1"),
            ("image_channels", self.image_channels >= 1, "an integer >= 1"),
        )


@dataclass
class VioData:
    train: Intervals
    val: Intervals | None
    rest_range: tuple[int, int]  # train intervals with images
    heldout_start_ns: int
    heldout_end_ns: int
    heldout_imu_samples: int
    bags: tuple[str, ...]
    imu_rate_hz: float  # the training samples' median rate: the only one the network sees


def load_vio_data(bags: tuple[Path, ...], options: VioTrainOptions,
                  image_hw: tuple[int, int]) -> VioData:
    """Read the bag(s), cut intervals and split train / val / held-out by time."""
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(bags)
    if seq.imu is None or seq.groundtruth is None:
        raise OdometryError(f"bags {[str(b) for b in bags]!r} need /imu0 and ground truth")
    # The clock's own faults first (named as evaluate-vio names them), then the frames'.
    check_groundtruth_stamps(seq)
    # a frame given twice would be a zero-length interval of its own
    seq = drop_repeated_frames(seq)[0]
    stamps, has_image = frame_stamps(seq)
    iv = build_intervals(seq, stamps, has_image, image_hw)
    imu_end = int(seq.imu.stamps_ns[-1])
    heldout_start = imu_end - int(options.heldout_s * NS_PER_S)
    val_start = heldout_start - int(options.val_s * NS_PER_S)
    ends = iv.frame_stamps_ns[1:]
    train_idx = np.flatnonzero(ends <= val_start)
    val_idx = np.flatnonzero((iv.frame_stamps_ns[:-1] >= val_start) & (ends <= heldout_start))
    if train_idx.size < options.chunk:
        raise OdometryError(
            f"bags {[str(b) for b in bags]!r} give {train_idx.size} training intervals before "
            f"the held-out {options.heldout_s} s and validation {options.val_s} s; need at "
            f"least chunk = {options.chunk}"
        )
    # Recorded in the weights: the estimator warns of an IMU at another rate (the network
    # takes each sample's dt but has seen this rate only). The median passes over gaps.
    train_imu = seq.imu.stamps_ns[seq.imu.stamps_ns <= val_start]
    periods = np.diff(train_imu)
    periods = periods[periods > 0]
    if periods.size == 0:
        raise OdometryError(
            f"bags {[str(b) for b in bags]!r}: {train_imu.size} IMU sample(s) with distinct "
            "stamps before the held-out and validation windows; expected 2 or more (the "
            "training data's IMU rate)")
    imu_rate_hz = NS_PER_S / float(np.median(periods))
    rest = np.flatnonzero(iv.image_mask[train_idx] > 0)
    rest_range = (int(rest[0]), int(rest[-1]) + 1) if rest.size else (0, 0)
    return VioData(
        train=select(iv, train_idx),
        val=select(iv, val_idx) if val_idx.size > options.chunk else None,
        rest_range=rest_range,
        heldout_start_ns=heldout_start,
        heldout_end_ns=imu_end,
        # distinct stamps: a recording with every IMU message twice held out 200 samples, not
        # the 400 said (the duplicates are refused where they are read)
        heldout_imu_samples=int(np.unique(seq.imu.stamps_ns[seq.imu.stamps_ns > heldout_start])
                                .size),
        bags=tuple(str(b) for b in bags),
        imu_rate_hz=imu_rate_hz,
    )


def _perturb(q_xyzw: np.ndarray, noise_deg: float, rng: np.random.Generator) -> np.ndarray:
    if noise_deg <= 0:
        return q_xyzw
    tilt = np.zeros((len(q_xyzw), 3))
    tilt[:, :2] = rng.normal(0.0, math.radians(noise_deg), (len(q_xyzw), 2))
    return (Rotation.from_rotvec(tilt) * Rotation.from_quat(q_xyzw)).as_quat()


def make_batch(data: Intervals, starts: np.ndarray, chunk: int, rng: np.random.Generator,
               options: VioTrainOptions, mask_images: np.ndarray | None = None
               ) -> dict[str, torch.Tensor]:
    """Stack chunks starting at ``starts`` into (B, T, ...) tensors."""
    index = starts[:, None] + np.arange(chunk)[None, :]
    flat = index.reshape(-1)
    q = data.q_start_xyzw[flat]
    # One tilt error per chunk, as the estimator's attitude error drifts slowly.
    q_noisy = _perturb(q.reshape(len(starts), chunk, 4)[:, 0], options.attitude_noise_deg, rng)
    tilt = (Rotation.from_quat(q_noisy) * Rotation.from_quat(
        q.reshape(len(starts), chunk, 4)[:, 0]).inv())
    q_used = np.concatenate([
        (tilt[i] * Rotation.from_quat(q.reshape(len(starts), chunk, 4)[i])).as_quat()
        for i in range(len(starts))
    ])
    sub = select(data, flat)
    aux = sub.aux(q_used)
    mask = data.image_mask[flat].reshape(len(starts), chunk)
    if mask_images is not None:
        mask = mask * (1.0 - mask_images[:, None])
    b, t = len(starts), chunk
    return {
        "imu": torch.from_numpy(data.imu[flat]).reshape(b, t, *data.imu.shape[1:]),
        "count": torch.from_numpy(data.imu_count[flat]).reshape(b, t),
        "pair": torch.from_numpy(data.pair[flat]).reshape(b, t, *data.pair.shape[1:]),
        "mask": torch.from_numpy(mask.astype(np.float32)),
        "aux": torch.from_numpy(aux).reshape(b, t, -1),
        "xi": torch.from_numpy(data.xi_gt[flat]).float().reshape(b, t, 6),
        "v0": torch.from_numpy(data.v_body_gt[starts]).float(),
        "v_end": torch.from_numpy(data.v_body_gt[index + 1]).float(),
    }


def vio_loss(xi: torch.Tensor, logvar: torch.Tensor, xi_gt: torch.Tensor,
             v_body: torch.Tensor, v_body_gt: torch.Tensor,
             weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Scaled L1 on the increment and the filtered velocity + L1 of log-scale vs log |error|.

    Every term is piecewise linear in the network's outputs and non-negative (DFW's step
    assumes a loss bounded below by 0). ``weight`` (B, T) weighs the intervals.
    """
    w = torch.ones(xi.shape[:-1]) if weight is None else weight
    w = (w / w.mean()).unsqueeze(-1)
    err = (xi - xi_gt) / XI_SCALE
    l1 = (err.abs() * w).mean()
    v_l1 = ((v_body - v_body_gt).abs() * w / VELOCITY_LOSS_SCALE_MPS).mean()
    log_b = 0.5 * (logvar - math.log(2.0))  # Laplace scale b: var = 2 b^2
    target = torch.log((xi - xi_gt).detach().abs() + 1e-5)
    unc = (log_b - target).abs().mean()
    loss = l1 + 0.5 * v_l1 + 0.1 * unc
    trans_mm = ((xi - xi_gt)[..., :3].norm(dim=-1).mean() * 1000).item()
    v_err = (v_body - v_body_gt).norm(dim=-1).mean().item()
    return loss, {"loss": loss.item(), "l1": l1.item(), "uncertainty_l1": unc.item(),
                  "trans_err_mm": trans_mm, "vel_err_mps": v_err}


def evaluate_intervals(model: VioNet, data: Intervals) -> dict[str, float]:
    """Run the model over ``data`` as one sequence (ground-truth attitudes in the features)."""
    model.eval()
    with torch.no_grad():
        v0 = torch.from_numpy(data.v_body_gt[:1]).float()
        xi, logvar, _, v_body = model(
            torch.from_numpy(data.imu)[None], torch.from_numpy(data.imu_count)[None],
            torch.from_numpy(data.pair)[None], torch.from_numpy(data.image_mask)[None],
            torch.from_numpy(data.aux())[None], model.initial_state(1, v0),
        )
        _, stats = vio_loss(xi[0], logvar[0], torch.from_numpy(data.xi_gt).float(),
                            v_body[0], torch.from_numpy(data.v_body_gt[1:]).float())
        # drift of the summed translation increments (in the start frames: a rough proxy)
        err = (xi[0, :, :3] - torch.from_numpy(data.xi_gt[:, :3]).float()).numpy()
    model.train()
    return {**stats, "sum_err_m": float(np.linalg.norm(err.sum(axis=0)))}


class ChunkSampler:
    """Draws training batches of ``options.chunk`` consecutive intervals; its RNG state is
    checkpointed by the loop, so a resumed run draws what an uninterrupted one would."""

    def __init__(self, data: VioData, options: VioTrainOptions, batch_size: int,
                 seed: int) -> None:
        self.data, self.options, self.batch_size = data, options, batch_size
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> dict[str, torch.Tensor]:
        rng, options, b, chunk = self.rng, self.options, self.batch_size, self.options.chunk
        starts = rng.integers(0, len(self.data.train) - chunk + 1, size=b)
        lo, hi = self.data.rest_range
        # chunks at least half inside the image window (the window is shorter than a chunk)
        n_rest = round(options.rest_fraction * b) if hi - lo >= chunk // 2 else 0
        if n_rest:
            starts[:n_rest] = rng.integers(lo, max(lo, hi - chunk // 2) + 1, size=n_rest)
            # a short bag can be all image window: keep each chunk inside the training set
            np.minimum(starts, len(self.data.train) - chunk, out=starts)
        mask_images = (rng.random(b) < options.image_dropout).astype(np.float32)
        return make_batch(self.data.train, starts, chunk, rng, options, mask_images)

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def train_vio(cfg: TrainConfig) -> dict[str, float]:
    """Train, write ``cfg.out_dir/{checkpoint.pt, metrics.csv, vio.pt}``; returns metrics."""
    from meetup_ros.training.checkpoint import save_weights

    options = VioTrainOptions.from_extra(dict(cfg.extra))
    torch.manual_seed(cfg.seed)
    if cfg.init_weights is not None:
        from meetup_ros.odometry.estimator import VioEstimator

        # fine-tuning the deployed network: its shape comes from the file
        model = VioEstimator.from_weights(cfg.init_weights).model.train()
        config = model.config
        logger.info("VIO starts from %s", cfg.init_weights)
        warn_ignored_sizes(cfg.init_weights, cfg.extra,
                           {k: getattr(options, k) for k in ARCHITECTURE_KEYS},
                           {k: getattr(config, k) for k in ARCHITECTURE_KEYS})
    else:
        config = VioNetConfig(imu_hidden=options.imu_hidden, core_hidden=options.core_hidden,
                              image_channels=options.image_channels)
        model = VioNet(config)
    t0 = time.perf_counter()
    data = load_vio_data(cfg.bags, options, (config.image_height, config.image_width))
    logger.info(
        "VIO data: %d train intervals (%d with images, IMU at %.1f Hz), %s val; never "
        "trained on: IMU samples after %d ns (%d samples, %.1f s) and the %.1f s before "
        "them (validation)",
        len(data.train), int(data.train.image_mask.sum()), data.imu_rate_hz,
        len(data.val) if data.val is not None else 0, data.heldout_start_ns,
        data.heldout_imu_samples, options.heldout_s, options.val_s,
    )
    epochs = cfg.epochs or 30
    batch_size = cfg.batch_size or 8
    n_train = len(data.train)

    sample_batch = ChunkSampler(data, options, batch_size, cfg.seed)

    def loss_fn(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        state = model.initial_state(len(batch["v0"]), batch["v0"])
        xi, logvar, _, v_body = model(batch["imu"], batch["count"], batch["pair"],
                                      batch["mask"], batch["aux"], state)
        # the image window is 5 % of the data but its (at-rest) drift is scored on its own
        weight = 1.0 + (options.image_weight - 1.0) * batch["mask"]
        return vio_loss(xi, logvar, batch["xi"], v_body, batch["v_end"], weight)

    def evaluate() -> dict[str, float]:
        return evaluate_intervals(model, data.val) if data.val is not None else {}

    metrics = _run_fit(cfg, model, sample_batch, loss_fn, evaluate, epochs,
                       options.steps_per_epoch, batch_size)
    metadata = {
        "model": MODEL_NAME,
        "config": asdict(config),
        "trained_on": list(data.bags),
        "heldout_start_ns": data.heldout_start_ns,
        "heldout_end_ns": data.heldout_end_ns,
        # the estimator warns of an IMU more than 25 % off it (estimator.IMU_RATE_TOLERANCE)
        "imu_rate_hz": data.imu_rate_hz,
        "never_trained_on": (
            f"IMU samples with stamp > {data.heldout_start_ns} ns (the last "
            f"{options.heldout_s} s, {data.heldout_imu_samples} samples) and intervals "
            f"starting in the {options.val_s} s before (validation)"
        ),
        "optimizer": cfg.optimizer,
        "init_weights": str(cfg.init_weights) if cfg.init_weights else None,
        "epochs": epochs,
        "seed": cfg.seed,
        "options": asdict(options),
        "synthetic_data": False,
    }
    if cfg.export and is_main_process():  # one rank writes the weights under torchrun
        save_weights(Path(cfg.out_dir) / "vio.pt", model.state_dict(), **metadata)
    metrics.update(
        heldout_start_ns=float(data.heldout_start_ns),
        heldout_imu_samples=float(data.heldout_imu_samples),
        train_intervals=float(n_train), train_time_s=time.perf_counter() - t0,
    )
    return metrics


def _run_fit(cfg: TrainConfig, model: VioNet, sample_batch: Any, loss_fn: Any, evaluate: Any,
             epochs: int, steps_per_epoch: int, batch_size: int) -> dict[str, float]:
    """Train through the project's loop (``training.loop.fit``; DFW by default)."""
    from meetup_ros.training.loop import fit

    return fit(cfg, model, sample_batch, None, loss_fn, defaults={
        "lr": DEFAULT_LR, "epochs": epochs, "batch_size": batch_size},
        steps_per_epoch=steps_per_epoch,
        evaluate=evaluate)
