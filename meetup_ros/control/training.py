"""Train the speed governor from recorded bags with DFW and the multi-class hinge loss.

Data (what is real and what is not):
- real: forward/lateral/vertical speed from the bags' ground truth (world velocity rotated
  into the body frame), yaw rate from the IMU gyro (ground-truth bias removed when the bag
  has it), nearest depth ahead from the bags' stereo pairs (``slam.stereo.stereo_depth``,
  then :func:`~meetup_ros.control.state.nearest_depth_m`). The stereo frames and the motion
  are not recorded together on EuRoC V1_01 (frames only while at rest), so each real motion
  state is paired with a real depth measurement in turn: real marginals, combined.
- synthetic: states sampled over the operating envelope, with extra samples near the
  time-to-collision boundaries and inside the two properties' domains (close and fast;
  close at any speed, over the clearance property's box, which the safety monitor's regions
  reach), said to be synthetic in the metrics: ``*_synthetic``.
Every state is labelled by :class:`~meetup_ros.control.expert.ExpertRule`.

Held out, never trained on: the last ``holdout_fraction`` of the real states in time, and a
separate synthetic set of ``holdout_fraction`` times the synthetic size (its own seed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meetup_ros.control import ControlError
from meetup_ros.control.expert import CONTINUE, STOP, ExpertRule
from meetup_ros.control.network import GovernorNet, GovernorRuntime, export_onnx
from meetup_ros.control.state import (
    ENVELOPE_LOWER,
    ENVELOPE_UPPER,
    STATE_NAMES,
    StateAxes,
    build_state,
    nearest_depth_m,
)
from meetup_ros.training.config import TrainConfig, parse_options
from meetup_ros.training.distributed import is_main_process

logger = logging.getLogger(__name__)

# The governor property's domain (config/governor_property.yaml): close and fast.
PROPERTY_MAX_DEPTH_M = 1.0
PROPERTY_MIN_SPEED_MPS = 0.5
# Both properties over finite boxes: what the exported network is proven against, and (the
# clearance one) the box its close-range training states are drawn from.
ENVELOPE_PROPERTY = "governor_property_envelope.yaml"
CLEARANCE_ENVELOPE_PROPERTY = "governor_clearance_property_envelope.yaml"
ENVELOPE_PROPERTIES = (ENVELOPE_PROPERTY, CLEARANCE_ENVELOPE_PROPERTY)
# Clearance training states reach this far past the property's 0.5 m, to the expert's 0.75 m
# boundary and beyond, so the network learns the boundary, not just the inside.
CLEARANCE_SAMPLE_MAX_DEPTH_M = 1.0
# Fewer real states than this is worth a warning (the bundled 5 s sample gives about 100).
MIN_REAL_STATES = 10


@dataclass(frozen=True)
class ControllerOptions:
    """Options from ``--set key=value``; unknown keys are rejected."""

    synthetic_samples: int = 30000
    holdout_fraction: float = 0.2
    hidden: int = 32
    depth_pairs: int = 24
    real_rate_hz: float = 20.0
    hinge_smoothing: float = 0.0
    verify_timeout_s: float = 60.0

    @classmethod
    def from_extra(cls, extra: dict[str, str]) -> ControllerOptions:
        """The options, each checked against its meaningful range before any data is read
        (testers' ``synthetic_samples=-1``, ``hidden=0`` and ``verify_timeout_s=inf`` failed
        deep inside numpy, the ONNX export or the verifier, the last after training).

        Raises:
            ControlError: naming the ``--set`` key, its value and the range expected.
        """
        return parse_options(cls, extra, owner="controller", error=ControlError)

    def ranges(self) -> tuple[tuple[str, bool, str], ...]:
        """``(key, in range, expected)`` per option, checked by ``parse_options``."""
        return (
            ("synthetic_samples", self.synthetic_samples >= 1, "an integer >= 1"),
            ("holdout_fraction", 0.0 < self.holdout_fraction < 1.0, "a fraction in (0, 1)"),
            ("hidden", self.hidden >= 1, "an integer >= 1 (units per hidden layer)"),
            ("depth_pairs", self.depth_pairs >= 1, "an integer >= 1 (stereo pairs)"),
            # the sampling period, int(1e9 / rate) ns, must be >= 1 ns and fit in int64
            ("real_rate_hz", 1e-9 <= self.real_rate_hz <= 1e9, "a rate in [1e-9, 1e9] Hz"),
            ("hinge_smoothing", self.hinge_smoothing >= 0.0, "a value >= 0 (0 = plain hinge)"),
            ("verify_timeout_s", self.verify_timeout_s >= 0.0,
             "seconds >= 0 (0 skips the proof: the network is then not proven, exit 1)"),
        )


# ---- states -----------------------------------------------------------------------------------

def clearance_box() -> tuple[np.ndarray, np.ndarray]:
    """The clearance property's finite box (``config/`` envelope file): ``(lower, upper)``."""
    from meetup_ros import paths
    from meetup_ros.verification.spec import load_property_yaml

    disjunct = load_property_yaml(paths.config_path(CLEARANCE_ENVELOPE_PROPERTY)).disjuncts[0]
    return disjunct.lower.copy(), disjunct.upper.copy()


def sample_synthetic_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 5)`` synthetic states: a quarter uniform over the envelope, a quarter near the
    time-to-collision boundaries, a quarter inside the property's domain (close and fast), a
    quarter close at any speed (the clearance property's box, up to 1 m)."""
    lower, upper = ENVELOPE_LOWER, ENVELOPE_UPPER
    states = rng.uniform(lower, upper, size=(n, len(STATE_NAMES)))
    # Depth spans two decades: sample it log-uniformly so close range is not starved.
    states[:, 4] = np.exp(rng.uniform(np.log(lower[4]), np.log(upper[4]), size=n))
    q = n // 4
    # Near the boundaries: pick a time to collision in [0.5, 4] s and a speed, set the depth.
    speed = rng.uniform(0.1, upper[0], size=q)
    ttc_s = rng.uniform(0.5, 4.0, size=q)
    states[q: 2 * q, 0] = speed
    states[q: 2 * q, 4] = np.clip(speed * ttc_s, lower[4], upper[4])
    # Inside the property's domain (close and fast), where "continue" must never win.
    states[2 * q: 3 * q, 0] = rng.uniform(PROPERTY_MIN_SPEED_MPS - 0.1, upper[0], size=q)
    states[2 * q: 3 * q, 4] = rng.uniform(lower[4], PROPERTY_MAX_DEPTH_M + 0.2, size=q)
    # Close at any speed, over the box the monitor's regions reach (depth below 0 included).
    box_lower, box_upper = clearance_box()
    box_upper[4] = CLEARANCE_SAMPLE_MAX_DEPTH_M
    states[3 * q:] = rng.uniform(box_lower, box_upper, size=(n - 3 * q, len(STATE_NAMES)))
    return states


def real_states(
    bags: tuple[Path, ...], options: ControllerOptions, axes: StateAxes | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(states (N, 5), stamps_ns (N,))`` from the bags' ground truth, IMU and stereo pairs.

    Raises:
        ControlError: the bags lack ground truth with velocities, IMU, or stereo pairs.
    """
    from meetup_ros.bags import topics
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(
        list(bags), required=(topics.IMU, topics.GROUNDTRUTH_ODOMETRY, topics.CAM0_IMAGE)
    )
    gt, imu = seq.groundtruth, seq.imu
    if gt is None or gt.v_world_mps is None or imu is None:
        raise ControlError(
            f"bags {[str(b) for b in bags]!r} need ground truth with velocities and IMU"
        )
    if seq.cam0 is None or seq.cam1 is None or seq.T_cam0_cam1 is None:
        raise ControlError(f"bags {[str(b) for b in bags]!r} need both cameras (stereo depth)")
    depths = stereo_nearest_depths(seq, options.depth_pairs)
    if depths.size == 0:
        raise ControlError("no stereo pair of the bags gave a valid nearest depth")

    # Ground truth at real_rate_hz, inside the IMU's span (the yaw rate needs the gyro).
    period_ns = int(1e9 / options.real_rate_hz)
    start_ns = max(int(gt.stamps_ns[0]), int(imu.stamps_ns[0]))
    end_ns = min(int(gt.stamps_ns[-1]), int(imu.stamps_ns[-1]))
    stamps_ns = np.arange(start_ns, end_ns + 1, period_ns, dtype=np.int64)
    gt_index = np.clip(np.searchsorted(gt.stamps_ns, stamps_ns), 0, len(gt.stamps_ns) - 1)
    imu_index = np.clip(np.searchsorted(imu.stamps_ns, stamps_ns), 0, len(imu.stamps_ns) - 1)
    from scipy.spatial.transform import Rotation

    R_world_body = Rotation.from_quat(gt.q_world_body_xyzw[gt_index]).as_matrix()
    v_body = np.einsum("nji,nj->ni", R_world_body, gt.v_world_mps[gt_index])
    gyro = imu.gyro_radps[imu_index].copy()
    if gt.bias_gyro is not None:
        gyro -= gt.bias_gyro[gt_index]
    states = np.stack([
        build_state(v_body[i], gyro[i], float(depths[i % depths.size]), axes)
        for i in range(stamps_ns.size)
    ])
    if stamps_ns.size < MIN_REAL_STATES:
        # A tester's bag with every header stamp 0 gave 1 state: training went on, on
        # synthetic states alone, with a NaN real accuracy and no word on the cause.
        logger.warning(
            "bags %s: only %d real state(s) at %g Hz: ground truth and IMU header stamps "
            "overlap over %d..%d ns (are the stamps unset?); the governor trains on synthetic "
            "states and its real held-out accuracy is NaN or rests on too few states",
            [str(b) for b in bags], stamps_ns.size, options.real_rate_hz, start_ns, end_ns)
    return states, stamps_ns


def stereo_nearest_depths(seq: Any, max_pairs: int) -> np.ndarray:
    """Nearest depth ahead (m) from up to ``max_pairs`` evenly spaced stereo pairs (paired by
    stamp: ``slam.data.stereo_frame_pairs``)."""
    from meetup_ros.slam.data import stereo_frame_pairs
    from meetup_ros.slam.stereo import stereo_depth

    frames = stereo_frame_pairs(seq)
    n = len(frames)
    picks = np.unique(np.linspace(0, n - 1, num=min(max_pairs, n)).round().astype(int))
    depths = []
    for k in picks:
        i, j = frames[k]
        depth_m = stereo_depth(
            seq.cam0.images[i], seq.cam1.images[j], seq.cam0, seq.cam1, seq.T_cam0_cam1
        )
        nearest = nearest_depth_m(depth_m)
        if np.isfinite(nearest):
            depths.append(nearest)
    logger.info(
        "stereo nearest depth from %d pairs: %s m", len(depths),
        np.round(np.percentile(depths, [0, 50, 100]), 2).tolist() if depths else "none",
    )
    return np.asarray(depths, dtype=np.float64)


# ---- evaluation ---------------------------------------------------------------------------------

def accuracy(net: GovernorNet, states: np.ndarray, labels: np.ndarray) -> float:
    if states.shape[0] == 0:
        return float("nan")
    device = next(net.parameters()).device
    with torch.no_grad():
        x = torch.as_tensor(states, dtype=torch.float32, device=device)
        predicted = net(x).argmax(dim=1).cpu().numpy()
    return float(np.mean(predicted == labels))


def property_domain_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 5)`` states inside the property's domain (depth <= 1 m, speed >= 0.5 m/s)."""
    lower = ENVELOPE_LOWER.copy()
    upper = ENVELOPE_UPPER.copy()
    lower[0], upper[4] = PROPERTY_MIN_SPEED_MPS, PROPERTY_MAX_DEPTH_M
    return rng.uniform(lower, upper, size=(n, len(STATE_NAMES)))


def clearance_domain_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 5)`` states inside the clearance property's box (depth <= 0.5 m, any speed)."""
    lower, upper = clearance_box()
    return rng.uniform(lower, upper, size=(n, len(STATE_NAMES)))


def continue_top_rate(scores: np.ndarray) -> float:
    """Fraction of score rows where "continue" is (one of) the top score(s)."""
    others = np.delete(scores, CONTINUE, axis=1).max(axis=1)
    return float(np.mean(scores[:, CONTINUE] >= others))


def stop_not_top_rate(scores: np.ndarray) -> float:
    """Fraction of score rows where "stop" is not strictly above both others."""
    others = np.delete(scores, STOP, axis=1).max(axis=1)
    return float(np.mean(scores[:, STOP] <= others))


def check_export(net: GovernorNet, onnx_path: Path, states: np.ndarray) -> float:
    """Max |torch - onnxruntime| over ``states``; raises ControlError above 1e-4."""
    runtime = GovernorRuntime(onnx_path)
    with torch.no_grad():
        expected = net(torch.as_tensor(states, dtype=torch.float32)).double().numpy()
    got = runtime.scores_batch(states)
    max_abs = float(np.max(np.abs(expected - got)))
    if not max_abs < 1e-4:
        raise ControlError(
            f"exported {str(onnx_path)!r} differs from the trained network by {max_abs!r} "
            "(expected < 1e-4)"
        )
    return max_abs


def verify_export(onnx_path: Path, timeout_s: float) -> dict[str, float]:
    """Prove the exported network against both properties over their finite boxes.

    Returns per property (``property`` for the close-and-fast one, ``clearance_property``)
    ``*_proven`` (1 unsat, 0 sat = counterexample found, -1 timeout/error) and
    ``*_verify_s``. A network with a counterexample is still written (the metrics say so);
    the safety monitor would then refuse it at run time wherever it fails.
    """
    from meetup_ros import paths
    from meetup_ros.verification.bab import verify
    from meetup_ros.verification.network import load_network
    from meetup_ros.verification.spec import load_property_yaml

    network = load_network(onnx_path)
    metrics: dict[str, float] = {}
    # One thread, as `meetup-ros verify` runs: the search's small batched products gain
    # nothing from two, and with another process busy on the second core a thread waiting
    # for it made the 37-domain close-and-fast proof take 3.6 s instead of 0.05 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {key: verify(network, load_property_yaml(paths.config_path(name)), timeout_s)
                   for key, name in (("property", ENVELOPE_PROPERTY),
                                     ("clearance_property", CLEARANCE_ENVELOPE_PROPERTY))}
    finally:
        torch.set_num_threads(threads)
    for key, result in results.items():
        name = ENVELOPE_PROPERTY if key == "property" else CLEARANCE_ENVELOPE_PROPERTY
        proven = {"unsat": 1.0, "sat": 0.0}.get(result.status, -1.0)
        if proven != 1.0:
            logger.warning("governor %s not proven (%s): %s", name, result.status, result)
        metrics[f"{key}_proven"] = proven
        metrics[f"{key}_verify_s"] = float(result.stats.get("time_s", float("nan")))
    return metrics


# ---- the training run ---------------------------------------------------------------------------

def build_datasets(
    cfg: TrainConfig, options: ControllerOptions
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Labelled train and held-out arrays, and a description of where they came from."""
    rng = np.random.default_rng(cfg.seed)
    rule = ExpertRule()
    real, real_stamps_ns = real_states(cfg.bags, options)
    n_real_train = round(real.shape[0] * (1.0 - options.holdout_fraction))
    synthetic = sample_synthetic_states(options.synthetic_samples, rng)
    n_holdout_synthetic = max(1, int(options.synthetic_samples * options.holdout_fraction))
    # The held-out synthetic set has its own generator, so it never overlaps the training set.
    synthetic_holdout = sample_synthetic_states(
        n_holdout_synthetic, np.random.default_rng(cfg.seed + 1_000_003)
    )
    arrays = {
        "train_x": np.concatenate([real[:n_real_train], synthetic]),
        "heldout_real_x": real[n_real_train:],
        "heldout_synthetic_x": synthetic_holdout,
    }
    for split in ("train", "heldout_real", "heldout_synthetic"):
        arrays[f"{split}_y"] = rule.labels(arrays[f"{split}_x"])
    description = {
        "real_states": int(real.shape[0]),
        "real_train": n_real_train,
        "real_heldout": int(real.shape[0] - n_real_train),
        "real_heldout_from_ns": int(real_stamps_ns[n_real_train])
        if n_real_train < real.shape[0] else None,
        "synthetic_train": int(synthetic.shape[0]),
        "synthetic_heldout": int(synthetic_holdout.shape[0]),
        "label_counts_train": np.bincount(arrays["train_y"], minlength=3).tolist(),
        "bags": [str(b) for b in cfg.bags],
    }
    return arrays, description


def train_controller(cfg: TrainConfig) -> dict[str, float]:
    """Train the governor with ``training.loop.fit`` (DFW by default, multi-class hinge loss),
    export ``cfg.out_dir/governor.onnx`` and check it against onnxruntime.

    Returns the final metrics: held-out accuracy on real and synthetic states, the sampled
    rate of "continue" on top inside the property's domain, and the export's max error.
    """
    from torch.utils.data import TensorDataset

    from meetup_ros.optim.losses import MultiClassHingeLoss
    from meetup_ros.training.loop import fit

    torch.manual_seed(cfg.seed)
    if cfg.init_weights is not None:
        raise ValueError(
            f"--init {str(cfg.init_weights)!r}: the governor trains from scratch (its deployed "
            "form is ONNX, and a full run takes under a minute)"
        )
    options = ControllerOptions.from_extra(dict(cfg.extra))
    arrays, description = build_datasets(cfg, options)
    logger.info("governor data: %s", description)
    train_x = arrays["train_x"]
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    net = GovernorNet(mean=mean, std=std, hidden=options.hidden)

    def tensors(split: str) -> TensorDataset:
        return TensorDataset(
            torch.as_tensor(arrays[f"{split}_x"], dtype=torch.float32),
            torch.as_tensor(arrays[f"{split}_y"], dtype=torch.long),
        )

    domain_t = torch.as_tensor(property_domain_states(20000, np.random.default_rng(cfg.seed + 7)),
                               dtype=torch.float32)
    clearance_t = torch.as_tensor(
        clearance_domain_states(20000, np.random.default_rng(cfg.seed + 11)), dtype=torch.float32)

    def domain_rates() -> dict[str, float]:
        """How often each property fails on states sampled in its domain (0 is the goal)."""
        device = next(net.parameters()).device
        with torch.no_grad():
            scores = net(domain_t.to(device)).double().cpu().numpy()
            clearance = net(clearance_t.to(device)).double().cpu().numpy()
        return {"property_continue_top_rate": continue_top_rate(scores),
                "clearance_stop_not_top_rate": stop_not_top_rate(clearance)}

    def evaluate() -> dict[str, float]:
        """Held-out figures each epoch (model in eval mode): real accuracy, property rates."""
        return {"accuracy_real": accuracy(net, arrays["heldout_real_x"],
                                          arrays["heldout_real_y"]), **domain_rates()}

    loss_fn = MultiClassHingeLoss(smoothing=options.hinge_smoothing)
    history = fit(
        cfg, net, tensors("train"), tensors("heldout_synthetic"), loss_fn,
        defaults={"lr": 0.1, "epochs": 60, "batch_size": 256}, evaluate=evaluate,
    )
    net.cpu()
    net.eval()
    metrics: dict[str, float] = {
        "accuracy_heldout_real": accuracy(net, arrays["heldout_real_x"], arrays["heldout_real_y"]),
        "accuracy_heldout_synthetic": accuracy(
            net, arrays["heldout_synthetic_x"], arrays["heldout_synthetic_y"]
        ),
        "accuracy_train": accuracy(net, arrays["train_x"], arrays["train_y"]),
    }
    metrics.update({f"{k}_sampled": v for k, v in domain_rates().items()})
    # under torchrun every rank holds the same weights: one writes governor.onnx and proves
    # it (each rank exported and ran the proof, writing one file concurrently)
    if cfg.export and is_main_process():
        onnx_path = export_onnx(
            net, Path(cfg.out_dir) / "governor.onnx",
            doc=f"speed governor; inputs {list(STATE_NAMES)}; trained by meetup-ros train "
                f"controller ({cfg.optimizer}) on {description['bags']}",
        )
        metrics["onnx_max_abs_error"] = check_export(net, onnx_path, train_x[:2048])
        if options.verify_timeout_s > 0:
            metrics.update(verify_export(onnx_path, options.verify_timeout_s))
        else:
            # A skipped proof is no proof: reported as undecided (-1) on both properties, so
            # that `train controller` exits 1 as for any unproven governor and no script
            # takes the file for a deployable one (it exited 0 and printed no *_proven key).
            logger.warning("--set verify_timeout_s=0: the proof of %s is skipped; the "
                           "exported governor is NOT proven on either property", onnx_path)
            metrics.update({"property_proven": -1.0, "clearance_property_proven": -1.0,
                            "verify_skipped": 1.0})
    final = {k: float(v) for k, v in (history or {}).items() if isinstance(v, int | float)}
    final.update(metrics)
    logger.info("governor metrics: %s", final)
    return final
