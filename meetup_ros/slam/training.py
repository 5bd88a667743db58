"""Offline training of the depth-code network and of the learned optimiser step.

Both trainers run through the project's loop (:func:`meetup_ros.training.loop.fit`), so the
optimizer comes from ``cfg.optimizer`` (DFW by default; SGD and Adam as options), and each
epoch writes ``cfg.out_dir/{checkpoint.pt, metrics.csv}`` (``--resume`` continues).

``train_depth(cfg)`` fits :class:`DepthCodeNet` on random crops of EuRoC rectified cam0
images with SGBM depth (training pairs only) and of the NYU and SUN RGB-D pairs.
``train_optimizer(cfg)`` fits the LSTM step of :mod:`meetup_ros.slam.learned` by unrolling it
on EuRoC training stereo pairs and on KITTI/TUM monocular pairs from ``MONO_TRAIN_FROM`` on,
with the depth network frozen. Held out (see :mod:`meetup_ros.slam.data`): EuRoC pairs >= 76,
the Middlebury Motorcycle stereo pair, the TUM RGB-D pair, and the first
``MONO_HELD_OUT_PAIRS`` pose pairs of each KITTI/TUM sequence.

Both losses are >= 0 with 0 as the ideal, as DFW's step-size rule assumes.

``cfg.extra`` keys (``--set key=value``; :class:`DepthTrainOptions` and
:class:`StepTrainOptions` check them before any data is read): ``data_root`` (default
../shared/data next to the repository), ``steps`` (steps per epoch), ``euroc_stride``; for the
depth network ``code_dim``; for the optimiser ``unroll``, ``depth_weights`` (default
models/depth_code.pt), ``mono_pairs`` (KITTI/TUM training pairs per sequence, from
``MONO_TRAIN_FROM``; at most ``MAX_MONO_PAIRS``, which keeps benchmark-slam's "late" pairs from
``MONO_LATE_FROM`` on out), ``pyramid``, ``mono_share`` and ``hidden`` (LSTM width; 32 gave the
pyramid step the same iteration counts as 16 on pairs 0-3, stereo and the TUM training pairs,
2026-12-05, so capacity is not what holds its TUM tail).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meetup_ros import paths
from meetup_ros.slam import SlamError
from meetup_ros.slam import data as slam_data
from meetup_ros.slam.depth_code import DepthCodeConfig, DepthCodeModel, DepthCodeNet
from meetup_ros.slam.learned import depth_network_digest
from meetup_ros.training.config import (
    TrainConfig,
    parse_options,
    warn_ignored_sizes,
)
from meetup_ros.training.distributed import is_main_process

logger = logging.getLogger(__name__)

# Default step sizes per optimizer (fit's ``defaults``): DFW's maximal step eta, SGD's and
# Adam's learning rates.
DEPTH_LR = {"dfw": 0.05, "sgd": 0.02, "adam": 2e-3}
OPTIMIZER_LR = {"dfw": 0.02, "sgd": 0.01, "adam": 3e-3}


@dataclass(frozen=True)
class DepthTrainOptions:
    """``train depth`` options from ``--set key=value`` (unknown keys are rejected)."""

    data_root: str | None = None  # None: default_data_root()
    steps: int = 20  # steps per epoch
    code_dim: int = 32
    euroc_stride: int = 3

    @classmethod
    def from_extra(cls, extra: dict[str, str]) -> DepthTrainOptions:
        """The options, checked before any data is read (testers' ``steps=0`` failed after
        10 s of data loading, ``code_dim=0`` inside torch, ``euroc_stride=0`` in range()).

        Raises:
            SlamError: naming the ``--set`` key, its value and the range expected.
        """
        return parse_options(cls, extra, owner="depth", error=SlamError)

    def ranges(self) -> tuple[tuple[str, bool, str], ...]:
        """``(key, in range, expected)`` per option, checked by ``parse_options``."""
        return (
            ("steps", self.steps >= 1, "an integer >= 1 (steps per epoch)"),
            ("code_dim", self.code_dim >= 1, "an integer >= 1"),
            ("euroc_stride", self.euroc_stride >= 1, "an integer >= 1"),
        )


# The most monocular training pairs per sequence: pairs MONO_TRAIN_FROM .. MONO_LATE_FROM - 1.
MAX_MONO_PAIRS = slam_data.MONO_LATE_FROM - slam_data.MONO_TRAIN_FROM


@dataclass(frozen=True)
class StepTrainOptions:
    """``train optimizer`` options from ``--set key=value`` (unknown keys are rejected)."""

    data_root: str | None = None  # None: default_data_root(), if it exists
    steps: int = 20  # steps per epoch
    unroll: int = 20
    depth_weights: str | None = None  # None: models/depth_code.pt
    euroc_stride: int = 3
    mono_pairs: int = 12  # KITTI/TUM training pairs per sequence
    hidden: int = 16
    pyramid: int = 0  # 1: the step reads the coarse level's GN step
    mono_share: float | None = None  # None: every problem alike

    @classmethod
    def from_extra(cls, extra: dict[str, str]) -> StepTrainOptions:
        """The options, checked before any data is read (a tester's ``euroc_stride=-1``
        trained on no EuRoC pair at all and exited 0 with a NaN held-out figure).

        Raises:
            SlamError: naming the ``--set`` key, its value and the range expected.
        """
        return parse_options(cls, extra, owner="optimizer", error=SlamError)

    def ranges(self) -> tuple[tuple[str, bool, str], ...]:
        """``(key, in range, expected)`` per option, checked by ``parse_options``."""
        return (
            ("steps", self.steps >= 1, "an integer >= 1 (steps per epoch)"),
            ("unroll", self.unroll >= 1, "an integer >= 1"),
            ("euroc_stride", self.euroc_stride >= 1, "an integer >= 1"),
            # pairs MONO_TRAIN_FROM .. MONO_LATE_FROM - 1 at most: more reached the KITTI
            # pairs benchmark-slam reports as held out ("mono_late"), and it scored the
            # step on pairs it was trained on (a tester's mono_pairs=100000)
            ("mono_pairs", 0 <= self.mono_pairs <= MAX_MONO_PAIRS,
             f"an integer >= 0 and <= {MAX_MONO_PAIRS} (training pairs "
             f"{slam_data.MONO_TRAIN_FROM}..{slam_data.MONO_LATE_FROM - 1} of each "
             f"sequence at most: pairs from {slam_data.MONO_LATE_FROM} on are benchmark-slam's "
             "held-out \"mono_late\" group)"),
            ("hidden", self.hidden >= 1, "an integer >= 1"),
            ("pyramid", self.pyramid in (0, 1), "0 or 1"),
            ("mono_share", self.mono_share is None or 0.0 <= self.mono_share <= 1.0,
             "a number in [0, 1]"),
        )


def _data_root(given: str | None) -> Path:
    """The shared data folder: ``--set data_root`` must name an existing folder (a typo was
    found only after the bags were read, or, for the learned step, silently trained it on
    EuRoC pairs alone); the default may be missing."""
    if given is None:
        return default_data_root()
    root = Path(given)
    if not root.is_dir():
        raise SlamError(f"--set data_root={given!r}: expected an existing folder (the shared "
                        "data sets, ../shared/data)")
    return root


def default_data_root() -> Path:
    return (paths.SOURCE_ROOT.parent / "shared" / "data").resolve()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- depth network ------------------------------------------------------------------------

def _to_batch(samples: list[slam_data.DepthSample], a_m: float, flip: list[bool] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (B,1,H,W) in [0,1], proximity targets (B,1,H,W), valid masks (B,1,H,W))."""
    imgs, prox, valid = [], [], []
    for k, s in enumerate(samples):
        img = s.image.astype(np.float32) / 255.0
        d = s.depth_m
        if flip is not None and flip[k]:
            img, d = img[:, ::-1], d[:, ::-1]
        ok = np.isfinite(d) & (d > 0)
        p = np.where(ok, a_m / (a_m + np.where(ok, d, 1.0)), 0.5)
        imgs.append(np.ascontiguousarray(img))
        prox.append(np.ascontiguousarray(p))
        valid.append(np.ascontiguousarray(ok))
    t = torch.from_numpy
    return (t(np.stack(imgs))[:, None].float(), t(np.stack(prox))[:, None].float(),
            t(np.stack(valid))[:, None])


def perturb_depth(prox: torch.Tensor, a_m: float, generator: torch.Generator | None = None,
                  ) -> torch.Tensor:
    """Proximity of depth * exp(s + tx * x + ty * y): a random global scale (|s| <= 0.5) and
    tilt (|t| <= 0.3 over x, y in [-1, 1]) per sample, which the image alone cannot tell.

    The code branch must reproduce these from the code, so the code learns to carry what the
    image prior cannot know (scale, slant) instead of duplicating the prior.
    """
    b, _, h, w = prox.shape
    coef = torch.rand(b, 3, generator=generator) * 2.0 - 1.0
    coef = coef * torch.tensor([0.5, 0.3, 0.3])
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    log_scale = (coef[:, 0, None, None] + coef[:, 1, None, None] * x
                 + coef[:, 2, None, None] * y)[:, None]
    depth = a_m * (1.0 - prox) / prox.clamp_min(1e-6)
    return a_m / (a_m + depth * torch.exp(log_scale))


def depth_loss(net: DepthCodeNet, image: torch.Tensor, prox: torch.Tensor, valid: torch.Tensor,
               code_weight: float = 1e-3, generator: torch.Generator | None = None,
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 proximity error with the zero code (vs the true depth) and with the encoded code (vs
    a randomly rescaled and tilted depth, see :func:`perturb_depth`), plus an uncertainty term
    and a small code norm; every term is >= 0.

    The uncertainty term is the Laplace negative log-likelihood minus its minimum over the
    scale, ``(e + eps) / b + log b - 1 - log(e + eps)`` with the error e held constant: it is
    zero when ``b = e + eps``, so b learns the expected error without a negative loss.
    """
    prior, log_b, basis = net.image_terms(image)
    target = perturb_depth(prox, net.cfg.average_depth_m, generator)
    code = net.encode(image, torch.where(valid, target, torch.full_like(target, 0.5)))
    logit_code = net.decode_logit(prior, basis, code)
    m = valid.float()
    n = m.sum().clamp_min(1.0)
    err_code = (torch.sigmoid(logit_code) - target).abs()
    err_prior = (torch.sigmoid(prior) - prox).abs()
    e = err_code.detach() + 1e-3
    uncertainty = e * torch.exp(-log_b) + log_b - 1.0 - torch.log(e)
    l1_code = (err_code * m).sum() / n
    l1_prior = (err_prior * m).sum() / n
    loss = (l1_code + l1_prior + 0.01 * (uncertainty * m).sum() / n
            + code_weight * (code ** 2).sum(1).mean())
    return loss, {"l1_code": float(l1_code.detach()), "l1_prior": float(l1_prior.detach())}


def load_depth_data(cfg: TrainConfig, height: int, width: int, euroc_stride: int,
                    data_root: Path) -> tuple[list, list, list]:
    """(full-resolution training DepthSamples, held-out PairSamples, held-out DepthSamples).

    Training: EuRoC rectified cam0 + SGBM (pairs < 76), NYU and SUN. Held out: EuRoC pairs
    >= 76 and the Middlebury Motorcycle pair (two-view), the TUM RGB-D pair (single image).
    """
    train = slam_data.euroc_depth_frames(list(cfg.bags), euroc_stride)
    pairs = slam_data.euroc_stereo_pairs(list(cfg.bags), height, width, 1)
    _, held_pairs = slam_data.euroc_split(pairs, euroc_stride)
    rgbd = _rgbd_folder(data_root)
    train += slam_data.rgbd_samples(rgbd, slam_data.RGBD_TRAIN, None, None)
    held = slam_data.rgbd_samples(rgbd, slam_data.RGBD_HELD_OUT, height, width)
    held_pairs.append(slam_data.motorcycle_pair(height, width))
    return train, held_pairs, held


def _rgbd_folder(data_root: Path) -> Path:
    rgbd = data_root / "rgbd_depth_pairs"
    if not rgbd.is_dir():
        raise FileNotFoundError(
            f"depth training reads the real RGB-D pairs from {str(rgbd)!r}, which is not a "
            "folder: point --set data_root=DIR at the shared data sets (../shared/data)")
    return rgbd


class CropSampler:
    """fit's batch sampler: random crops (random source, then a random sample of it, crop
    side 45-100 %, horizontal flip, exposure gain 0.7-1.3) at the network's size. Every
    source weighs the same: the EuRoC frames are near-duplicates (the camera is at rest)."""

    def __init__(self, train: list[slam_data.DepthSample], cfg: DepthCodeConfig,
                 batch_size: int, seed: int) -> None:
        self.groups: dict[str, list[slam_data.DepthSample]] = {}
        for sample in train:
            key = "euroc" if sample.name.startswith("euroc") else sample.name
            self.groups.setdefault(key, []).append(sample)
        self.cfg = cfg
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        names = sorted(self.groups)
        chosen = []
        for _ in range(self.batch_size):
            group = self.groups[names[int(self.rng.integers(len(names)))]]
            sample = group[int(self.rng.integers(len(group)))]
            chosen.append(slam_data.random_crop(sample, self.cfg.height, self.cfg.width,
                                                self.rng))
        flips = [bool(self.rng.random() < 0.5) for _ in chosen]
        img, prox, valid = _to_batch(chosen, self.cfg.average_depth_m, flips)
        gain = torch.from_numpy(self.rng.uniform(0.7, 1.3, (len(chosen), 1, 1, 1))).float()
        return (img * gain).clamp(0.0, 1.0), prox, valid

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def train_depth(cfg: TrainConfig) -> dict[str, float]:
    """Train the depth-code network through training.loop.fit; exports depth_code.pt."""
    from meetup_ros.training.checkpoint import save_weights
    from meetup_ros.training.loop import fit

    options = DepthTrainOptions.from_extra(dict(cfg.extra))
    data_root = _data_root(options.data_root)
    _rgbd_folder(data_root)  # before the bags are read
    _seed(cfg.seed)
    model_cfg = DepthCodeConfig(code_dim=options.code_dim)
    if cfg.init_weights is not None:  # fine-tuning: the shape comes from the file
        model_cfg = DepthCodeModel.from_weights(cfg.init_weights).net.cfg
        warn_ignored_sizes(cfg.init_weights, cfg.extra, {"code_dim": options.code_dim},
                            {"code_dim": model_cfg.code_dim})
    train, held_pairs, held = load_depth_data(
        cfg, model_cfg.height, model_cfg.width, options.euroc_stride, data_root
    )
    net = DepthCodeNet(model_cfg)
    if cfg.init_weights is not None:
        net = DepthCodeModel.from_weights(cfg.init_weights).net.train()
        logger.info("depth network starts from %s", cfg.init_weights)
    sampler = CropSampler(train, model_cfg, cfg.batch_size or 8, cfg.seed)
    logger.info("depth training on %s; held out %s", sorted(sampler.groups),
                [s.name for s in held] + [p.name for p in held_pairs])

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                ) -> tuple[torch.Tensor, dict[str, float]]:
        image, prox, valid = batch
        return depth_loss(net, image, prox, valid)

    metrics = fit(cfg, net, sampler, None, loss_fn,
                  defaults={"lr": DEPTH_LR, "epochs": 60, "batch_size": 8},
                  steps_per_epoch=options.steps)
    model = DepthCodeModel(net.eval())
    metrics.update(evaluate_depth(model, held, held_pairs))
    if cfg.export and is_main_process():  # one rank writes the weights under torchrun
        save_weights(cfg.out_dir / "depth_code.pt", net.state_dict(),
                     **model.metadata(optimizer=cfg.optimizer,
                                      train_sources=sorted(sampler.groups),
                                      held_out=[s.name for s in held]
                                      + [p.name for p in held_pairs]))
    return metrics


def evaluate_depth(model: DepthCodeModel, held: list, held_pairs: list) -> dict[str, float]:
    """Held-out depth AbsRel: zero code (single image) on every sample, and after Gauss-Newton
    on the two-view photometric problem (stereo calibration as the pose prior) on the pairs."""
    from meetup_ros.slam.evaluation import depth_metrics
    from meetup_ros.slam.solvers import gauss_newton, make_problem

    torch.set_num_threads(1)
    out: dict[str, float] = {}
    for s in held:
        img = torch.from_numpy(s.image.astype(np.float32) / 255.0)[None, None]
        pred = model.predict_depth(img)[0, 0].numpy()
        out[f"heldout_{s.name}_prior_absrel"] = depth_metrics(pred, s.depth_m)["absrel"]
    groups: dict[str, list[tuple[float, float]]] = {}
    for p in held_pairs:
        problem = make_problem(model.net, p.image_a, p.image_b, p.K, p.T_b_a,
                               pose_prior_weight=10.0, K_b=p.K_b)
        result = gauss_newton(problem, iterations=20)
        h, w = p.depth_a_m.shape
        with torch.no_grad():
            prior = problem.depth(problem.view_a, problem.zero()[: problem.code_dim])
            fitted = problem.depth(problem.view_a, problem.split(result.x)[0])
        groups.setdefault(p.name.split("_")[0], []).append((
            depth_metrics(prior.reshape(h, w).numpy(), p.depth_a_m)["absrel"],
            depth_metrics(fitted.reshape(h, w).numpy(), p.depth_a_m)["absrel"],
        ))
    for name, rows in groups.items():
        out[f"heldout_{name}_prior_absrel"] = float(np.mean([r[0] for r in rows]))
        out[f"heldout_{name}_two_view_absrel"] = float(np.mean([r[1] for r in rows]))
    return out


# ---- learned optimiser ------------------------------------------------------------------------

def perturbed_start(problem: Any, rng: np.random.Generator, rot_rad: float = 0.02,
                    trans_m: float = 0.02) -> torch.Tensor:
    """x0 = zero codes and a random pose increment (rho, phi) of the given sizes."""
    x0 = problem.zero()
    k = problem.code_dim
    rho = rng.normal(size=3)
    phi = rng.normal(size=3)
    x0[2 * k:2 * k + 3] = torch.from_numpy(trans_m * rho / np.linalg.norm(rho)).float()
    x0[2 * k + 3:] = torch.from_numpy(rot_rad * phi / np.linalg.norm(phi)).float()
    return x0


def unroll_loss(step: Any, problem: Any, x0: torch.Tensor, unroll: int,
                cap: float = 20.0) -> torch.Tensor:
    """Mean over the unroll of log(E(x_t) / E*) where positive, E* being the error at which
    Gauss-Newton converges from the same start (up to ``3 * unroll`` iterations).

    This is the area above the target on a log scale: it is small only if the step gets
    to GN's final error in few iterations, which is what the benchmark counts; a log
    because a bad step can raise E a millionfold, and a loss that large made DFW's full
    step (gamma = 1) throw the weights away. (A smooth count of the iterations above the
    benchmark's tolerance, added to it, trained a worse step: 0.53 vs 0.35 of GN's
    iterations on the monocular pairs.) Each term is at most ``cap``; a non-finite error
    charges ``cap`` for the rest of the unroll. >= 0, and 0 once below GN's error.
    """
    from meetup_ros.slam.learned import LearnedStep
    from meetup_ros.slam.solvers import gauss_newton

    assert isinstance(step, LearnedStep)
    x = x0.detach()
    e0 = problem.error(x)
    target = min(gauss_newton(problem, x, iterations=3 * unroll).errors)
    state = step.init_state(problem.dim)
    total = torch.zeros(())
    dx: torch.Tensor | None = None
    errors = [e0]
    coarse = step.coarse_problem(problem)
    for t in range(unroll):
        eq = problem.normal_equations(x)
        dx_coarse = step.coarse_step(coarse, x)
        feats, dx_gn, dx_jac = step.features(problem, eq, e0, dx,
                                             errors[-2] if t > 0 else None, dx_coarse)
        dx, state = step(feats, dx_gn, dx_jac, state, dx, dx_coarse)
        x = x.detach() + dx  # truncated: no derivative through the next linearisation
        res = problem.residual(x)
        e = 0.5 * (res * res).sum()
        if not torch.isfinite(e):
            total = total + cap * (unroll - t)
            if t == 0:  # nothing to differentiate: zero gradients, the charge as the loss
                total = total + sum(0.0 * q.sum() for q in step.parameters())
            break
        errors.append(float(e.detach()))
        total = total + torch.relu(torch.log(e / target)).clamp(max=cap)
    return total / unroll


def build_problems(depth_model: DepthCodeModel, pairs: list, pose_prior_weight: float,
                   code_prior_weight: float = 1e-3) -> list:
    from meetup_ros.slam.solvers import make_problem

    return [make_problem(depth_model.net, p.image_a, p.image_b, p.K, p.T_b_a,
                         code_prior_weight, True, pose_prior_weight, p.K_b) for p in pairs]


class ProblemSampler:
    """fit's batch sampler for the optimiser: one (problem, start point) per step.

    Settings per EuRoC training pair: the frontend's (pose tied to the calibration, 2 cm /
    0.02 rad start error) and a free-pose one with 5 cm / 0.04 rad. Per monocular training
    pair (KITTI/TUM pairs >= ``MONO_TRAIN_FROM``, when given): free pose, 0.02 rad and 20 % of
    the baseline (at least 2 cm), the benchmark's start error."""

    SETTINGS = ((10.0, 0.02, 0.02), (0.0, 0.04, 0.05))  # (pose prior weight, rot, trans)
    MONO_ROT_RAD = 0.02
    MONO_TRANS_FRAC = 0.2

    def __init__(self, depth_model: DepthCodeModel, pairs: list, seed: int,
                 mono_pairs: list | None = None, mono_share: float | None = None) -> None:
        self.items = [(prob, rot, trans) for w, rot, trans in self.SETTINGS
                      for prob in build_problems(depth_model, pairs, w)]
        self.n_stereo = len(self.items)
        mono_pairs = mono_pairs or []
        for pair, prob in zip(mono_pairs, build_problems(depth_model, mono_pairs, 0.0),
                              strict=True):
            trans = max(self.MONO_TRANS_FRAC * float(np.linalg.norm(pair.T_b_a[:3, 3])), 0.02)
            self.items.append((prob, self.MONO_ROT_RAD, trans))
        # None: every item alike; else the share of draws from the monocular items
        self.mono_share = mono_share if mono_pairs else None
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> tuple[Any, torch.Tensor]:
        if self.mono_share is None:
            index = int(self.rng.integers(len(self.items)))
        elif self.rng.random() < self.mono_share:
            index = self.n_stereo + int(self.rng.integers(len(self.items) - self.n_stereo))
        else:
            index = int(self.rng.integers(self.n_stereo))
        problem, rot, trans = self.items[index]
        return problem, perturbed_start(problem, self.rng, rot, trans)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def check_held_out_stride(bags: list[Path], stride: int) -> None:
    """Refuse a ``euroc_stride`` that takes none of the bag's held-out EuRoC pairs (index >=
    ``EUROC_HELD_OUT_FROM``): the held-out figure was NaN (null in the report) and the run
    exited 0 (a tester's ``euroc_stride=1000``). The bag is read for its frame count only
    (0.3 s), before the SGBM depth of every pair (3 s).

    Raises:
        SlamError: naming the stride, the held-out pair indices and the largest stride that
            is sure to take one of them; or the bag, when it has no pair to hold out.
    """
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(bags)
    slam_data.check_stereo(seq)
    assert seq.cam0 is not None
    total, cut = len(seq.cam0.images), slam_data.EUROC_HELD_OUT_FROM
    names = ", ".join(repr(str(b)) for b in bags)
    if total <= cut:
        raise SlamError(f"bag {names} has {total} stereo pairs: none is held out (pairs from "
                        f"{cut} on are); expected a bag with more than {cut}")
    if any(i % stride == 0 for i in range(cut, total)):
        return
    raise SlamError(
        f"--set euroc_stride={stride}: takes none of the held-out EuRoC pairs {cut}..{total - 1} "
        f"of bag {names}, so nothing would be held out; expected at most {total - cut} (or a "
        f"stride with a multiple in {cut}..{total - 1})")


def train_optimizer(cfg: TrainConfig) -> dict[str, float]:
    """Train the learned LSTM step by unrolling it on EuRoC training stereo pairs and
    KITTI/TUM training pairs (fit; see ``unroll_loss``).

    The depth network (``depth_weights``, default models/depth_code.pt) is frozen. Held-out
    check each epoch: the error after 3 learned steps over GN's after 3, on the held-out
    EuRoC pairs. Exports slam_optimizer.pt.
    """
    from meetup_ros.slam.learned import LearnedStep, LearnedStepConfig, learned_solve
    from meetup_ros.slam.solvers import gauss_newton
    from meetup_ros.training.checkpoint import save_weights
    from meetup_ros.training.loop import fit

    options = StepTrainOptions.from_extra(dict(cfg.extra))
    data_root = _data_root(options.data_root)
    torch.set_num_threads(1)
    _seed(cfg.seed)
    depth_path = (Path(options.depth_weights) if options.depth_weights is not None
                  else paths.model_path("depth_code.pt"))
    depth_model = DepthCodeModel.from_weights(depth_path)
    for p in depth_model.net.parameters():
        p.requires_grad_(False)
    stride = options.euroc_stride
    check_held_out_stride(list(cfg.bags), stride)
    pairs = slam_data.euroc_stereo_pairs(list(cfg.bags), depth_model.cfg.height,
                                         depth_model.cfg.width, stride)
    train_pairs, held_pairs = slam_data.euroc_split(pairs)  # by frame index (every stride-th)
    mono_pairs: list = []
    if data_root.is_dir():
        mono_pairs = slam_data.mono_pose_pairs(
            data_root, depth_model.cfg.height, depth_model.cfg.width,
            limit=options.mono_pairs, first=slam_data.MONO_TRAIN_FROM)
    else:
        logger.warning("no %s: the learned step trains on EuRoC pairs only (the monocular "
                       "KITTI/TUM pairs, where it matters most, are missing)", data_root)
    sampler = ProblemSampler(depth_model, train_pairs, cfg.seed, mono_pairs, options.mono_share)
    held_problems = build_problems(depth_model, held_pairs, ProblemSampler.SETTINGS[0][0])
    logger.info("learned step: %d training problems (%d monocular pairs from %s), %d held out",
                len(sampler.items), len(mono_pairs), data_root, len(held_problems))
    step = LearnedStep(LearnedStepConfig(hidden=options.hidden, pyramid=options.pyramid == 1))
    if cfg.init_weights is not None:
        step = LearnedStep.from_weights(cfg.init_weights).train()
        logger.info("learned step starts from %s", cfg.init_weights)
        warn_ignored_sizes(cfg.init_weights, cfg.extra,
                            {"hidden": options.hidden, "pyramid": options.pyramid},
                            {"hidden": step.cfg.hidden, "pyramid": int(step.cfg.pyramid)})
    unroll = options.unroll

    def loss_fn(batch: tuple[Any, torch.Tensor]) -> torch.Tensor:
        problem, x0 = batch
        return unroll_loss(step, problem, x0, unroll)

    # After 3 iterations: both have converged on these stereo pairs by 20, and the ratio
    # there says nothing. GN's side does not change between epochs.
    held_starts = [perturbed_start(p, np.random.default_rng(1)) for p in held_problems]
    held_gn = [min(gauss_newton(p, x0, iterations=3, tol=0.0).errors)
               for p, x0 in zip(held_problems, held_starts, strict=True)]

    def evaluate() -> dict[str, float]:
        ratios = []
        for problem, x0, gn_error in zip(held_problems, held_starts, held_gn, strict=True):
            learned = learned_solve(step, problem, x0, iterations=3, tol=0.0)
            ratios.append(min(learned.errors) / gn_error)
        return {"learned_over_gn_error_at_3": float(np.mean(ratios)) if ratios
                else float("nan")}

    metrics = fit(cfg, step, sampler, None, loss_fn,
                  defaults={"lr": OPTIMIZER_LR, "epochs": 100, "batch_size": 1},
                  steps_per_epoch=options.steps, evaluate=evaluate)
    step.eval()
    if cfg.export and is_main_process():  # one rank writes the weights under torchrun
        save_weights(cfg.out_dir / "slam_optimizer.pt", step.state_dict(),
                     **step.metadata(unroll=unroll, optimizer=cfg.optimizer,
                                     depth_weights=_recorded_path(depth_path),
                                     # portable, unlike the path: what check_depth_pairing
                                     # compares with the depth network it is given
                                     depth_code_dim=depth_model.cfg.code_dim,
                                     depth_weights_sha256=depth_network_digest(depth_model),
                                     train=[p.name for p in train_pairs + mono_pairs],
                                     held_out=[p.name for p in held_pairs]))
    return metrics


# ---- pairing of the depth network and the learned step ------------------------------------

def _recorded_path(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it (the weights are copied
    to other machines; an absolute path from the author's said nothing there), else as
    given."""
    try:
        return str(Path(path).resolve().relative_to(paths.SOURCE_ROOT))
    except ValueError:
        return str(path)


