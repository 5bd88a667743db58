"""Depth-code network: shapes, zero code = single-image prior, safe and strict weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from meetup_ros.slam import SlamError
from meetup_ros.slam.depth_code import (
    DepthCodeConfig,
    DepthCodeModel,
    DepthCodeNet,
    logit_to_depth,
    proximity_to_depth,
)
from meetup_ros.training.checkpoint import save_weights


@pytest.fixture(scope="module")
def shipped(repo_root: Path) -> DepthCodeModel:
    return DepthCodeModel.from_weights(repo_root / "models" / "depth_code.pt")


def test_shapes_and_zero_code_is_the_image_prior(shipped: DepthCodeModel) -> None:
    cfg = shipped.cfg
    torch.manual_seed(0)
    image = torch.rand(2, 1, cfg.height, cfg.width)
    net = shipped.net
    with torch.no_grad():
        prior, log_b, basis = net.image_terms(image)
        assert prior.shape == log_b.shape == (2, 1, cfg.height, cfg.width)
        assert basis.shape == (2, cfg.code_dim, cfg.height, cfg.width)
        assert 32 <= cfg.code_dim <= 128
        code = net.encode(image, torch.full_like(image, 0.5))
        assert code.shape == (2, cfg.code_dim)
        zero = net.decode_logit(prior, basis, torch.zeros(2, cfg.code_dim))
        torch.testing.assert_close(zero, prior)
        torch.testing.assert_close(shipped.predict_depth(image), logit_to_depth(prior, 2.0))
        # Linear in the code: decode(c1 + c2) - prior = (decode(c1) - prior) + (decode(c2) - prior)
        c1, c2 = torch.randn(2, cfg.code_dim), torch.randn(2, cfg.code_dim)
        lhs = net.decode_logit(prior, basis, c1 + c2) - prior
        rhs = (net.decode_logit(prior, basis, c1) - prior) + (net.decode_logit(prior, basis, c2)
                                                            - prior)
        torch.testing.assert_close(lhs, rhs, atol=1e-5, rtol=1e-5)


def test_proximity_round_trip() -> None:
    depth = torch.tensor([0.5, 2.0, 10.0])
    prox = 2.0 / (2.0 + depth)
    torch.testing.assert_close(proximity_to_depth(prox, 2.0), depth)
    torch.testing.assert_close(logit_to_depth(torch.logit(prox), 2.0), depth)


def test_shipped_weights_are_small_and_give_room_scale_depth(
    shipped: DepthCodeModel, repo_root: Path
) -> None:
    assert (repo_root / "models" / "depth_code.pt").stat().st_size < 2_000_000
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.slam.depth_code import image_to_tensor

    seq = read_sequence(repo_root / "data" / "euroc_v1_01_easy_sample")
    assert seq.cam0 is not None
    img = image_to_tensor(seq.cam0.images[-1], shipped.cfg.height, shipped.cfg.width)
    depth = shipped.predict_depth(img).numpy()
    assert 0.8 < float(np.median(depth)) < 5.0


def test_missing_corrupt_and_mismatched_weights_raise(tmp_path: Path) -> None:
    with pytest.raises(SlamError, match="does not exist"):
        DepthCodeModel.from_weights(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch archive")
    with pytest.raises(SlamError, match="not a readable"):
        DepthCodeModel.from_weights(corrupt)
    other = tmp_path / "other.pt"
    save_weights(other, {"w": torch.zeros(1)}, kind="slam_optimizer", config={})
    with pytest.raises(SlamError, match="holds 'slam_optimizer' weights, expected 'depth_code'"):
        DepthCodeModel.from_weights(other)
    wrong = tmp_path / "wrong.pt"
    model = DepthCodeModel(DepthCodeNet(DepthCodeConfig(code_dim=32)))
    meta = model.metadata()
    meta["config"]["code_dim"] = 64
    save_weights(wrong, model.net.state_dict(), **meta)
    with pytest.raises(SlamError, match="does not match"):
        DepthCodeModel.from_weights(wrong)
