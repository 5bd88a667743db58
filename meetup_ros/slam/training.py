"""Offline training of the depth-code network and of the learned optimiser step.

``train_depth(cfg)`` fits :class:`DepthCodeNet` on EuRoC SGBM depth (training pairs only),
the NYU and SUN RGB-D pairs and the Middlebury Motorcycle pair; ``train_optimizer(cfg)`` fits
the LSTM step of :mod:`meetup_ros.slam.learned` by unrolling it on EuRoC training stereo
pairs with the depth network frozen. Held out (see :mod:`meetup_ros.slam.data`): EuRoC
pairs >= 76 and the TUM RGB-D pair; KITTI/TUM pose pairs are evaluation only.

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
from meetup_ros.slam.depth_code import (
    DepthCodeConfig,
    DepthCodeModel,
    DepthCodeNet,
    depth_to_proximity,
)
from meetup_ros.training.config import TrainConfig

logger = logging.getLogger(__name__)

DEPTH_KEYS = {"data_root", "steps", "code_dim", "euroc_stride"}
OPTIMIZER_KEYS = {"data_root", "steps", "unroll", "depth_weights", "euroc_stride"}


def _extra(cfg: TrainConfig, allowed: set[str]) -> dict[str, str]:
    unknown = set(cfg.extra) - allowed
    if unknown:
        raise SlamError(f"unknown --set keys {sorted(unknown)!r}; expected some of {sorted(allowed)}")
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
    return loss, {"nll_code": float(loss_code), "nll_prior": float(loss_prior)}


def _abs_rel(pred: torch.Tensor, ref_prox: torch.Tensor, valid: torch.Tensor, a: float) -> float:
    d_ref = a * (1 - ref_prox) / ref_prox
    return float(((pred - d_ref).abs() / d_ref)[valid].mean())


def load_depth_data(cfg: TrainConfig, height: int, width: int, euroc_stride: int,
                    data_root: Path) -> tuple[list, list, list]:
    """(train DepthSamples, held-out EuRoC PairSamples, held-out DepthSamples)."""
    pairs = slam_data.euroc_stereo_pairs(list(cfg.bags), height, width, euroc_stride)
    cut = slam_data.EUROC_HELD_OUT_FROM
    train = [slam_data.DepthSample(p.image_a, p.depth_a_m, p.name)
             for i, p in enumerate(pairs) if i * euroc_stride < cut
             and p.depth_a_m is not None]
    held_pairs = [p for i, p in enumerate(pairs) if i * euroc_stride >= cut]
    rgbd = data_root / "rgbd_depth_pairs"
    train += slam_data.rgbd_samples(rgbd, slam_data.RGBD_TRAIN, height, width)
    train.append(slam_data.motorcycle_sample(height, width))
    held = slam_data.rgbd_samples(rgbd, slam_data.RGBD_HELD_OUT, height, width)
    return train, held_pairs, held


def train_depth(cfg: TrainConfig) -> dict[str, float]:
    """Train the depth-code network; writes cfg.out_dir/{checkpoint.pt, metrics.csv, depth_code.pt}."""
    from meetup_ros.training.checkpoint import save_weights

    extra = _extra(cfg, DEPTH_KEYS)
    torch.set_num_threads(1)
    _seed(cfg.seed)
    model_cfg = DepthCodeConfig(code_dim=int(extra.get("code_dim", 32)))
    data_root = Path(extra.get("data_root", default_data_root()))
    train, held_pairs, held = load_depth_data(
        cfg, model_cfg.height, model_cfg.width, int(extra.get("euroc_stride", 1)), data_root
    )
    logger.info("depth training on %d samples; held out %d EuRoC pairs + %s",
                len(train), len(held_pairs), [s.name for s in held])
    net = DepthCodeNet(model_cfg)
    # Every source weighs the same: EuRoC frames are near-duplicates (camera at rest).
    groups: dict[str, list[slam_data.DepthSample]] = {}
    for s in train:
        groups.setdefault(s.name.split("_")[0], []).append(s)
    epochs = cfg.epochs or 30
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
            chosen = [random.choice(groups[random.choice(names)]) for _ in range(batch)]
            img, prox, valid = _to_batch(chosen, a, [random.random() < 0.5 for _ in chosen])
            img = img * (0.7 + 0.6 * torch.rand(img.shape[0], 1, 1, 1))
            loss, parts = depth_loss(net, img.clamp(0, 1), prox, valid)
            opt.zero_grad()
            loss.backward()
            opt.step()
        metrics = {"epoch": epoch, "loss": float(loss), **parts}
        logger.info("epoch %d %s (%.0f s)", epoch, metrics, time.perf_counter() - start)
    model = DepthCodeModel(net.eval())
    metrics.update(evaluate_depth_prior(model, held, held_pairs))
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(cfg.out_dir / "depth_code.pt", net.state_dict(),
                 **model.metadata(train=[s.name for s in train][:5] + ["..."],
                                  held_out=[s.name for s in held] + [p.name for p in held_pairs]))
    return metrics


def evaluate_depth_prior(model: DepthCodeModel, held: list, held_pairs: list) -> dict[str, float]:
    """Zero-code (single-image) depth AbsRel on the held-out samples."""
    from meetup_ros.slam.evaluation import depth_metrics

    out: dict[str, float] = {}
    for name, samples in (("rgbd", held), ("euroc", [
            slam_data.DepthSample(p.image_a, p.depth_a_m, p.name) for p in held_pairs])):
        rel = []
        for s in samples:
            img = torch.from_numpy(s.image.astype(np.float32) / 255.0)[None, None]
            pred = model.predict_depth(img)[0, 0].numpy()
            rel.append(depth_metrics(pred, s.depth_m)["absrel"])
        if rel:
            out[f"heldout_{name}_prior_absrel"] = float(np.mean(rel))
    return out


def _unused(_: Any) -> None:  # keeps depth_to_proximity imported for callers of this module
    del depth_to_proximity
