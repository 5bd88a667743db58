"""Image-conditioned depth autoencoder with a compact code (in the spirit of CodeSLAM).

Depth d is represented as proximity p = a / (a + d) in (0, 1). The decoder gives the proximity
logit as ``prior(image) + basis(image) @ code``: linear in the code, so log-depth is too
(d = a * exp(-logit)) and the code Jacobian is the basis itself, fixed per image. The zero
code gives the image's own depth prediction (single-image depth). The decoder also gives a
per-pixel Laplace scale ``b`` of the proximity (its uncertainty).

Shapes: images (B, 1, H, W) float in [0, 1]; H, W = the model's ``height``, ``width``
(64 x 96 by default); codes (B, code_dim).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meetup_ros.slam import SlamError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthCodeConfig:
    height: int = 64
    width: int = 96
    code_dim: int = 32
    channels: tuple[int, ...] = (16, 24, 32, 48)
    average_depth_m: float = 2.0  # a in p = a / (a + d)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(4, c_out), nn.ELU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1), nn.ELU(),
    )


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit spread so that exposure differences between datasets vanish."""
    mean = image.mean(dim=(-2, -1), keepdim=True)
    std = image.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
    return (image - mean) / std


class DepthCodeNet(nn.Module):
    """Image U-Net (prior logit, log-scale, code basis) + depth encoder (proximity -> code)."""

    def __init__(self, cfg: DepthCodeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.enc = nn.ModuleList(
            [_block(1 if i == 0 else ch[i - 1], ch[i], 2) for i in range(len(ch))]
        )
        self.dec = nn.ModuleList(
            [_block(ch[i] + (ch[i + 1] if i + 1 < len(ch) else 0), ch[i], 1)
             for i in range(len(ch) - 1, -1, -1)]
        )
        self.head = nn.Conv2d(ch[0] + 1, 2 + cfg.code_dim, 3, 1, 1)
        # Depth encoder: proximity and image in, code out.
        self.code_enc = nn.Sequential(
            _block(2, ch[0], 2), _block(ch[0], ch[1], 2), _block(ch[1], ch[2], 2),
            _block(ch[2], ch[3], 2), nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(),
            nn.Linear(ch[3] * 6, cfg.code_dim),
        )

    def image_terms(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(prior_logit (B,1,H,W), log_b (B,1,H,W), basis (B,code_dim,H,W)) for an image."""
        x = normalize_image(image)
        skips = []
        h = x
        for layer in self.enc:
            h = layer(h)
            skips.append(h)
        h = skips[-1]
        for i, layer in enumerate(self.dec):
            level = len(skips) - 1 - i
            if i > 0:
                h = F.interpolate(h, size=skips[level].shape[-2:], mode="bilinear",
                                  align_corners=False)
                h = torch.cat([h, skips[level]], 1)
            h = layer(h)
        h = F.interpolate(h, size=image.shape[-2:], mode="bilinear", align_corners=False)
        out = self.head(torch.cat([h, x], 1))
        prior, log_b, basis = out[:, :1], out[:, 1:2], out[:, 2:]
        # Small basis scale: a code of unit size moves log-depth by tenths, not decades.
        return prior, log_b.clamp(-6.0, 1.0), 0.1 * basis

    def encode(self, image: torch.Tensor, proximity: torch.Tensor) -> torch.Tensor:
        """Code (B, code_dim) of a proximity map (B,1,H,W); invalid pixels set to 0.5."""
        return self.code_enc(torch.cat([proximity - 0.5, normalize_image(image)], 1))

    @staticmethod
    def decode_logit(
        prior: torch.Tensor, basis: torch.Tensor, code: torch.Tensor
    ) -> torch.Tensor:
        """Proximity logit (B,1,H,W) = prior + sum_k code_k * basis_k."""
        return prior + torch.einsum("bkhw,bk->bhw", basis, code).unsqueeze(1)


def proximity_to_depth(proximity: torch.Tensor, average_depth_m: float) -> torch.Tensor:
    return average_depth_m * (1.0 - proximity) / proximity.clamp_min(1e-6)


def depth_to_proximity(depth_m: torch.Tensor, average_depth_m: float) -> torch.Tensor:
    return average_depth_m / (average_depth_m + depth_m)


def logit_to_depth(logit: torch.Tensor, average_depth_m: float) -> torch.Tensor:
    """d = a (1 - p) / p with p = sigmoid(logit), i.e. a * exp(-logit).

    The logit is clamped to +-15 (depth a * 3e-7 .. a * 3e6): a wild optimiser step otherwise
    overflows exp to inf, and inf * 0 in the masked warp's backward pass is NaN.
    """
    return average_depth_m * torch.exp(-logit.clamp(-15.0, 15.0))


class DepthCodeModel:
    """A loaded depth-code network in eval mode, with its configuration."""

    WEIGHTS_KIND = "depth_code"

    def __init__(self, net: DepthCodeNet) -> None:
        self.net = net.eval()
        self.cfg = net.cfg

    @classmethod
    def from_weights(cls, path: str | Path) -> DepthCodeModel:
        """Load models/depth_code.pt (weights-only archive from training.checkpoint).

        Raises:
            SlamError: the file is missing, corrupt, of another kind, or does not fit the
                network its metadata describes.
        """
        from meetup_ros.training.checkpoint import CheckpointError, load_weights

        try:
            state, meta = load_weights(Path(path), kind=cls.WEIGHTS_KIND)
        except CheckpointError as exc:
            raise SlamError(str(exc)) from exc
        try:
            raw = dict(meta["config"])
            raw["channels"] = tuple(raw["channels"])
            cfg = DepthCodeConfig(**raw)
            net = DepthCodeNet(cfg)
            net.load_state_dict(state)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise SlamError(
                f"weights file {str(path)!r} does not match the depth-code network: {exc}"
            ) from exc
        return cls(net)

    def metadata(self, **extra: Any) -> dict[str, Any]:
        cfg = asdict(self.cfg)
        cfg["channels"] = list(cfg["channels"])
        return {"kind": self.WEIGHTS_KIND, "config": cfg, **extra}

    @torch.no_grad()
    def image_terms(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.image_terms(image)

    @torch.no_grad()
    def predict_depth(self, image: torch.Tensor) -> torch.Tensor:
        """Single-image depth (B,1,H,W) metres: the zero code."""
        prior, _log_b, _basis = self.net.image_terms(image)
        return logit_to_depth(prior, self.cfg.average_depth_m)


def image_to_tensor(image_u8: Any, height: int, width: int) -> torch.Tensor:
    """uint8 (H0, W0) numpy image -> (1, 1, height, width) float in [0, 1] (area resampling)."""
    import cv2
    import numpy as np

    arr = np.asarray(image_u8)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small.astype(np.float32) / 255.0)[None, None]
