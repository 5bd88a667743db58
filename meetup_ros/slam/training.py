"""Offline training of the depth-code network and of the learned optimiser step.

``train_depth(cfg)`` fits :class:`DepthCodeNet` on EuRoC SGBM depth (training pairs only),
and the NYU and SUN RGB-D pairs; ``train_optimizer(cfg)`` fits
the LSTM step of :mod:`meetup_ros.slam.learned` by unrolling it on EuRoC training stereo
pairs with the depth network frozen. Held out (see :mod:`meetup_ros.slam.data`): EuRoC
pairs >= 76, the Middlebury Motorcycle stereo pair and the TUM RGB-D pair; KITTI/TUM pose
pairs are evaluation only.

``cfg.extra`` keys: ``data_root`` (default ../shared/data next to the repository),
``steps`` (optimiser steps per epoch), ``code_dim``, ``unroll`` (learned optimiser).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meetup_ros import paths
from meetup_ros.slam import SlamError
from meetup_ros.slam import data as slam_data
from meetup_ros.slam.depth_code import DepthCodeConfig, DepthCodeModel, DepthCodeNet
from meetup_ros.training.config import TrainConfig

logger = logging.getLogger(__name__)

DEPTH_KEYS = {"data_root", "steps", "code_dim", "euroc_stride"}
OPTIMIZER_KEYS = {"data_root", "steps", "unroll", "depth_weights", "euroc_stride"}


def _extra(cfg: TrainConfig, allowed: set[str]) -> dict[str, str]:
    unknown = set(cfg.extra) - allowed
    if unknown:
        raise SlamError(
            f"unknown --set keys {sorted(unknown)!r}; expected some of {sorted(allowed)}"
        )
    return dict(cfg.extra)


def default_data_root() -> Path:
    return (paths.SOURCE_ROOT.parent / "shared" / "data").resolve()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_batch(samples: list[slam_data.DepthSample], a_m: float,
              flip: list[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def depth_loss(net: DepthCodeNet, image: torch.Tensor, prox: torch.Tensor,
               valid: torch.Tensor, code_weight: float = 1e-3) -> tuple[torch.Tensor, dict]:
    """Laplace NLL of the proximity with the encoded code and with the zero code."""
    prior, log_b, basis = net.image_terms(image)
    code = net.encode(image, torch.where(valid, prox, torch.full_like(prox, 0.5)))
    logit_code = net.decode_logit(prior, basis, code)
    b = torch.exp(log_b)
    m = valid.float()
    n = m.sum().clamp_min(1.0)

    def nll(logit: torch.Tensor) -> torch.Tensor:
        return (((torch.sigmoid(logit) - prox).abs() / b + log_b) * m).sum() / n

    loss_code = nll(logit_code)
    loss_prior = nll(prior)
    loss = loss_code + loss_prior + code_weight * (code ** 2).sum(1).mean()
    return loss, {"nll_code": float(loss_code.detach()), "nll_prior": float(loss_prior.detach())}


def _abs_rel(pred: torch.Tensor, ref_prox: torch.Tensor, valid: torch.Tensor, a: float) -> float:
    d_ref = a * (1 - ref_prox) / ref_prox
    return float(((pred - d_ref).abs() / d_ref)[valid].mean())


def load_depth_data(cfg: TrainConfig, height: int, width: int, euroc_stride: int,
                    data_root: Path) -> tuple[list, list, list]:
    """(full-resolution training DepthSamples, held-out PairSamples, held-out DepthSamples).

    Training: EuRoC rectified cam0 + SGBM (pairs < 76), NYU and SUN. Held out: EuRoC pairs
    >= 76 and the Middlebury Motorcycle pair (two-view), the TUM RGB-D pair (single image).
    """
    train = slam_data.euroc_depth_frames(list(cfg.bags), euroc_stride)
    pairs = slam_data.euroc_stereo_pairs(list(cfg.bags), height, width, 1)
    held_pairs = pairs[slam_data.EUROC_HELD_OUT_FROM::euroc_stride]
    rgbd = data_root / "rgbd_depth_pairs"
    train += slam_data.rgbd_samples(rgbd, slam_data.RGBD_TRAIN, None, None)
    held = slam_data.rgbd_samples(rgbd, slam_data.RGBD_HELD_OUT, height, width)
    held_pairs.append(slam_data.motorcycle_pair(height, width))
    return train, held_pairs, held


def train_depth(cfg: TrainConfig) -> dict[str, float]:
    """Train the depth-code network; writes cfg.out_dir/depth_code.pt and returns metrics.

    Each step draws ``batch_size`` random crops (random source, then a random sample of it,
    crop side 45-100 %, horizontal flip, exposure gain 0.7-1.3) at the network's size.
    """
    from meetup_ros.training.checkpoint import save_weights

    extra = _extra(cfg, DEPTH_KEYS)
    torch.set_num_threads(1)
    _seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    model_cfg = DepthCodeConfig(code_dim=int(extra.get("code_dim", 32)))
    data_root = Path(extra.get("data_root", default_data_root()))
    train, held_pairs, held = load_depth_data(
        cfg, model_cfg.height, model_cfg.width, int(extra.get("euroc_stride", 1)), data_root
    )
    logger.info("depth training on %d samples; held out %s", len(train),
                [s.name for s in held] + [p.name for p in held_pairs])
    net = DepthCodeNet(model_cfg)
    # Every source weighs the same: EuRoC frames are near-duplicates (camera at rest).
    groups: dict[str, list[slam_data.DepthSample]] = {}
    for sample in train:
        groups.setdefault(sample.name.split("_")[0] + sample.name.split("_")[1][:1], []).append(
            sample)
    epochs = cfg.epochs or 60
    steps = int(extra.get("steps", 20))
    batch = cfg.batch_size or 8
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr or 2e-3)
    a = model_cfg.average_depth_m
    metrics: dict[str, float] = {}
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        for _ in range(steps):
            names = list(groups)
            chosen = [slam_data.random_crop(random.choice(groups[random.choice(names)]),
                                            model_cfg.height, model_cfg.width, np_rng)
                      for _ in range(batch)]
            img, prox, valid = _to_batch(chosen, a, [random.random() < 0.5 for _ in chosen])
            img = img * (0.7 + 0.6 * torch.rand(img.shape[0], 1, 1, 1))
            loss, parts = depth_loss(net, img.clamp(0, 1), prox, valid)
            opt.zero_grad()
            loss.backward()
            opt.step()
        metrics = {"epoch": float(epoch), "loss": float(loss.detach()), **parts}
        logger.info("epoch %d %s (%.0f s)", epoch, metrics, time.perf_counter() - start)
    model = DepthCodeModel(net.eval())
    metrics.update(evaluate_depth(model, held, held_pairs))
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(cfg.out_dir / "depth_code.pt", net.state_dict(),
                 **model.metadata(train_sources=sorted(groups),
                                  held_out=[s.name for s in held] + [p.name for p in held_pairs]))
    return metrics


def evaluate_depth(model: DepthCodeModel, held: list, held_pairs: list) -> dict[str, float]:
    """Held-out depth AbsRel: zero code (single image) on every sample, and after Gauss-Newton
    on the two-view photometric problem (stereo calibration as the pose prior) on the pairs."""
    from meetup_ros.slam.evaluation import depth_metrics
    from meetup_ros.slam.solvers import gauss_newton, make_problem

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


def unroll_loss(step: Any, problem: Any, x0: torch.Tensor, unroll: int) -> torch.Tensor:
    """Mean over the unroll of E(x_t) / E(x_0): rewards reaching a low error early."""
    from meetup_ros.slam.learned import LearnedStep

    assert isinstance(step, LearnedStep)
    x = x0.detach()
    e0 = problem.error(x)
    state = step.init_state(problem.dim)
    total = torch.zeros(())
    for _ in range(unroll):
        r, J = problem.linearize(x)
        feats, dx_gn, dx_jac = step.features(problem, r, J, e0)
        dx, state = step(feats, dx_gn, dx_jac, state)
        x = x.detach() + dx  # truncated: no derivative through the next linearisation
        res = problem.residual(x)
        total = total + 0.5 * (res * res).sum() / e0
    return total / unroll


def build_problems(depth_model: DepthCodeModel, pairs: list, pose_prior_weight: float,
                   code_prior_weight: float = 1e-3) -> list:
    from meetup_ros.slam.solvers import make_problem

    return [make_problem(depth_model.net, p.image_a, p.image_b, p.K, p.T_b_a,
                         code_prior_weight, True, pose_prior_weight, p.K_b) for p in pairs]


def train_optimizer(cfg: TrainConfig) -> dict[str, float]:
    """Train the learned LSTM step by unrolling it on EuRoC training stereo pairs.

    The depth network (``depth_weights``, default models/depth_code.pt) is frozen. Each
    problem starts from zero codes and a random pose perturbation (2 cm, 0.02 rad) around
    the calibration, as in :mod:`meetup_ros.slam.benchmark`. Writes slam_optimizer.pt.
    """
    from meetup_ros.slam.learned import LearnedStep, learned_solve
    from meetup_ros.slam.solvers import gauss_newton
    from meetup_ros.training.checkpoint import save_weights

    extra = _extra(cfg, OPTIMIZER_KEYS)
    torch.set_num_threads(1)
    _seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    depth_path = Path(extra["depth_weights"]) if "depth_weights" in extra else paths.model_path(
        "depth_code.pt")
    depth_model = DepthCodeModel.from_weights(depth_path)
    stride = int(extra.get("euroc_stride", 3))
    pairs = slam_data.euroc_stereo_pairs(list(cfg.bags), depth_model.cfg.height,
                                         depth_model.cfg.width, stride)
    cut = slam_data.EUROC_HELD_OUT_FROM
    train_pairs = [p for i, p in enumerate(pairs) if i * stride < cut]
    held_pairs = [p for i, p in enumerate(pairs) if i * stride >= cut]
    # Two settings per pair: the frontend's (pose tied to the calibration, small start error)
    # and a free-pose one with larger start errors, like the monocular benchmark pairs.
    settings = ((10.0, 0.02, 0.02), (0.0, 0.04, 0.05))
    train_problems = [(prob, rot, trans) for w, rot, trans in settings
                      for prob in build_problems(depth_model, train_pairs, w)]
    held_problems = build_problems(depth_model, held_pairs, settings[0][0])
    logger.info("learned step: %d training problems, %d held out", len(train_problems),
                len(held_problems))
    step = LearnedStep()
    opt = torch.optim.Adam(step.parameters(), lr=cfg.lr or 3e-3)
    unroll = int(extra.get("unroll", 4))
    epochs = cfg.epochs or 20
    steps = int(extra.get("steps", 10))
    loss = torch.zeros(())
    for epoch in range(epochs):
        for _ in range(steps):
            problem, rot, trans = train_problems[int(rng.integers(len(train_problems)))]
            x0 = perturbed_start(problem, rng, rot, trans)
            loss = unroll_loss(step, problem, x0, unroll)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(step.parameters(), 1.0)
            opt.step()
        logger.info("epoch %d unroll loss %.4f", epoch, float(loss))
    step.eval()
    # Held-out check: error after `unroll` learned steps vs GN's best within 20 iterations.
    ratios = []
    for problem in held_problems:
        x0 = perturbed_start(problem, np.random.default_rng(1))
        gn = gauss_newton(problem, x0, iterations=20)
        learned = learned_solve(step, problem, x0, iterations=unroll)
        ratios.append(learned.errors[-1] / gn.errors[-1])
    metrics = {"unroll_loss": float(loss),
               "heldout_learned_over_gn_error": float(np.mean(ratios)) if ratios else float("nan")}
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(cfg.out_dir / "slam_optimizer.pt", step.state_dict(),
                 **step.metadata(unroll=unroll, depth_weights=str(depth_path),
                                 train=[p.name for p in train_pairs],
                                 held_out=[p.name for p in held_pairs]))
    return metrics
