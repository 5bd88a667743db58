"""training.loop.fit: metrics.csv, atomic checkpoints, exact resume, both data paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from meetup_ros.optim import MultiClassHingeLoss
from meetup_ros.training import checkpoint
from meetup_ros.training.config import OptimizerName, TrainConfig
from meetup_ros.training.loop import CHECKPOINT_NAME, TrainingError, fit
from meetup_ros.training.metrics import read_metrics
from meetup_ros.training.optimizers import make_optimizer


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g)).argmax(1)
    return TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:])


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    # dropout makes the result depend on the restored RNG state
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                               torch.nn.Linear(16, 3))


def _cfg(out: Path, epochs: int, resume: bool = False,
         optimizer: OptimizerName = "dfw") -> TrainConfig:
    return TrainConfig(bags=(Path("unused"),), out_dir=out, optimizer=optimizer,
                       epochs=epochs, batch_size=32, resume=resume, seed=3,
                       weight_decay=1e-4)


def _run(out: Path, epochs: int, resume: bool = False,
         optimizer: str = "dfw") -> tuple[dict[str, float], torch.nn.Module]:
    train, held_out = _data()
    model = _model()
    metrics = fit(_cfg(out, epochs, resume, optimizer), model, train, held_out,
                  MultiClassHingeLoss(), defaults={"lr": 0.2})
    return metrics, model


@pytest.mark.parametrize("optimizer", ["dfw", "adam"])
def test_resume_continues_exactly(tmp_path: Path, optimizer: str) -> None:
    straight, model_straight = _run(tmp_path / "straight", 4, optimizer=optimizer)
    _run(tmp_path / "split", 2, optimizer=optimizer)
    resumed, model_resumed = _run(tmp_path / "split", 4, resume=True, optimizer=optimizer)
    for a, b in zip(model_straight.state_dict().values(), model_resumed.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert resumed["train_loss"] == straight["train_loss"]
    assert resumed["eval_loss"] == straight["eval_loss"]
    rows_split = read_metrics(tmp_path / "split" / "metrics.csv")
    rows_straight = read_metrics(tmp_path / "straight" / "metrics.csv")
    assert [r["epoch"] for r in rows_split] == [1, 2, 3, 4]
    for a, b in zip(rows_split, rows_straight, strict=True):
        assert a["train_loss"] == b["train_loss"]
        assert a["eval_accuracy"] == b["eval_accuracy"]


def test_metrics_and_checkpoint_contents(tmp_path: Path) -> None:
    metrics, model = _run(tmp_path, 3)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "eval_loss", "eval_accuracy", "gamma", "lr", "time_s"} <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert 0.0 <= rows[0]["gamma"] <= 1.0
    assert metrics["epoch"] == 3 and metrics["eval_accuracy"] > 0.8
    state = checkpoint.load(tmp_path / "checkpoint.pt")  # weights_only
    assert state["epoch"] == 3
    assert set(state) >= {"model", "optimizer", "rng", "metrics", "config"}
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value)


def test_resume_of_a_finished_run_trains_nothing(tmp_path: Path) -> None:
    first, _ = _run(tmp_path, 2)
    again, _ = _run(tmp_path, 2, resume=True)
    assert again == first
    assert len(read_metrics(tmp_path / "metrics.csv")) == 2


def test_resume_from_a_mismatched_checkpoint_names_it_and_keeps_it(tmp_path: Path) -> None:
    """Another optimizer, another network, or a weights file instead of a checkpoint: a
    clear error naming the checkpoint and what does not fit; the file stays as it was."""
    _run(tmp_path, 2, optimizer="dfw")
    ckpt = tmp_path / CHECKPOINT_NAME
    before = ckpt.read_bytes()
    with pytest.raises(TrainingError, match=r"trained with --optimizer dfw, not adam"):
        _run(tmp_path, 3, resume=True, optimizer="adam")
    train, held_out = _data()
    other = torch.nn.Sequential(torch.nn.Linear(6, 3))
    with pytest.raises(TrainingError, match=r"weights of another network than Sequential"):
        fit(_cfg(tmp_path, 3, resume=True), other, train, held_out, MultiClassHingeLoss(),
            defaults={"lr": 0.2})
    assert ckpt.read_bytes() == before
    weights_only = tmp_path / "weights"
    weights_only.mkdir()
    checkpoint.save(weights_only / CHECKPOINT_NAME, {"model": _model().state_dict()})
    with pytest.raises(TrainingError, match=r"not a training checkpoint \(no optimizer"):
        _run(weights_only, 3, resume=True)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, 1)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def crash(src: str, dst: str) -> None:  # the rename never happens: a crash mid-save
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _run(tmp_path, 3, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.csv"]
    assert checkpoint.load(tmp_path / "checkpoint.pt")["epoch"] == 1


class _Sampler:
    """A batch-sampling callable with its own RNG, checkpointed through state_dict."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.rng = np.random.default_rng(5)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.rng.integers(0, len(self.x), size=16))
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, object]:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def _run_sampled(out: Path, epochs: int, resume: bool = False) -> torch.nn.Module:
    train, held_out = _data()
    model = _model()
    sampler = _Sampler(*train.tensors)
    loss = MultiClassHingeLoss()

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor,
                                                                   dict[str, float]]:
        value = loss(model(batch[0]), batch[1])
        return value, {"hinge": float(value.detach())}

    metrics = fit(_cfg(out, epochs, resume), model, sampler, held_out, loss_fn,
                  steps_per_epoch=5, defaults={"lr": 0.2})
    assert "train_hinge" in metrics and "eval_hinge" in metrics and "eval_loss" in metrics
    return model


def test_sampled_batches_and_resume(tmp_path: Path) -> None:
    straight = _run_sampled(tmp_path / "a", 3)
    _run_sampled(tmp_path / "b", 1)
    resumed = _run_sampled(tmp_path / "b", 3, resume=True)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_arguments(tmp_path: Path) -> None:
    train, held_out = _data()
    with pytest.raises(TrainingError, match="steps_per_epoch > 0, got None"):
        fit(_cfg(tmp_path, 1), _model(), lambda: None, None, MultiClassHingeLoss())
    with pytest.raises(TrainingError, match=r"unknown defaults \['lr_max'\]"):
        fit(_cfg(tmp_path, 1), _model(), train, held_out, MultiClassHingeLoss(),
            defaults={"lr_max": 1.0})
    with pytest.raises(TrainingError, match="Dataset or a callable, got 'int'"):
        fit(_cfg(tmp_path, 1), _model(), 3, None, MultiClassHingeLoss())  # type: ignore[arg-type]


def test_make_optimizer_defaults(tmp_path: Path) -> None:
    params = list(_model().parameters())
    assert make_optimizer(_cfg(tmp_path, 1, optimizer="adam"), params,
                          0.1).param_groups[0]["lr"] == 1e-3
    assert make_optimizer(_cfg(tmp_path, 1, optimizer="sgd"), params,
                          {"sgd": 0.05}).param_groups[0]["lr"] == 0.05
    assert make_optimizer(_cfg(tmp_path, 1), params, 0.3).param_groups[0]["eta"] == 0.3


def test_callable_eval_data_is_rejected_with_the_signature(tmp_path: Path) -> None:
    train, _ = _data()
    with pytest.raises(TrainingError, match=r"eval_data must be a Dataset or None, got "
                                            r"'function'.*evaluate="):
        fit(_cfg(tmp_path, 1), _model(), train, lambda: {},  # type: ignore[arg-type]
            MultiClassHingeLoss())


@pytest.mark.parametrize("optimizer", ["dfw", "sgd"])
def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, optimizer: OptimizerName
) -> None:
    train, held_out = _data()
    hinge = MultiClassHingeLoss()
    calls = {"n": 0}

    def loss_nan_in_epoch_2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = hinge(output, target)
        return loss * float("nan") if calls["n"] > 10 and output.requires_grad else loss

    with pytest.raises(TrainingError,
                       match=r"loss is nan at epoch 2, step \d+;.*checkpoint of epoch 1"):
        fit(_cfg(tmp_path, 3, optimizer=optimizer), _model(), train, held_out,
            loss_nan_in_epoch_2, defaults={"lr": 0.2})
    saved = checkpoint.load(tmp_path / CHECKPOINT_NAME)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
