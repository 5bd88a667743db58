"""DFW studies and the train command, on tiny settings: files written, splits fixed, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meetup_ros.cli import CommandError
from meetup_ros.cli.train import load_trainer, parse_set
from meetup_ros.optim import studies


def test_mnist_split_is_deterministic_and_disjoint(shared_data: Path) -> None:
    a = studies.load_dataset("mnist", shared_data / "mnist_t10k")
    b = studies.load_dataset("mnist", shared_data / "mnist_t10k")
    assert a.train_x.shape == (8000, 784) and a.test_x.shape == (2000, 784)
    assert np.array_equal(a.test_y, b.test_y) and np.array_equal(a.train_x, b.train_x)
    assert a.train_x.min() >= 0.0 and a.train_x.max() <= 1.0
    assert set(np.unique(a.test_y)) == set(range(10))
    val = a.validation()
    assert len(val.train_x) + len(val.test_x) == 8000


def test_bad_dataset_arguments(tmp_path: Path) -> None:
    with pytest.raises(studies.StudyError, match="'svhn'"):
        studies.load_dataset("svhn")
    with pytest.raises(studies.StudyError, match="MNIST folder"):
        studies.load_dataset("mnist", tmp_path / "missing")
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(studies.StudyError, match="unsigned-byte"):
        studies.read_idx(tmp_path / "bad.idx")


def test_optimizer_study_writes_table_and_plot(tmp_path: Path) -> None:
    rows = studies.optimizer_study(tmp_path, datasets=["digits"], seeds=[0], epochs=1,
                                   lr_grids={"dfw": (0.1,), "sgd": (0.1,)}, hidden=(16,))
    assert [r["optimizer"] for r in rows] == ["dfw", "sgd"]
    assert all(0.5 < r["test_accuracy_mean"] <= 1.0 for r in rows)
    assert (tmp_path / "optimizers.png").stat().st_size > 1000
    assert "| digits | dfw |" in (tmp_path / "results.md").read_text()


def test_iteration_cost_study(tmp_path: Path) -> None:
    rows = studies.iteration_cost_study(tmp_path, sizes=(20, 16, 4), batch_size=8,
                                        repetitions=2, iterations=2)
    assert {r["optimizer"] for r in rows} == {"sgd", "dfw", "sgd_nesterov", "dfw_per_tensor"}
    assert all(r["median_ms"] > 0 for r in rows)
    assert (tmp_path / "iteration_cost.png").is_file()
    assert (tmp_path / "results.csv").read_text().startswith("optimizer,median_ms")


def test_train_command_helpers() -> None:
    assert parse_set(["hidden=32", "a = b"]) == {"hidden": "32", "a": "b"}
    with pytest.raises(CommandError, match="KEY=VALUE, got 'hidden'"):
        parse_set(["hidden"])
    with pytest.raises(CommandError, match="'x' twice"):
        parse_set(["x=1", "x=2"])
    assert callable(load_trainer("controller"))
