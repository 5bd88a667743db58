"""Data-parallel fit: 2 CPU processes (gloo) train the same tiny model to identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from meetup_ros.optim import MultiClassHingeLoss
from meetup_ros.training.config import OptimizerName, TrainConfig
from meetup_ros.training.loop import fit
from meetup_ros.training.metrics import read_metrics

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, port: int, out_dir: str, optimizer: OptimizerName) -> None:
    # the environment torchrun would give each process
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE))
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g)).argmax(1)
    # a different initialisation per rank: fit must broadcast rank 0's weights
    torch.manual_seed(100 + rank)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    cfg = TrainConfig(bags=(Path("unused"),), out_dir=Path(out_dir), optimizer=optimizer,
                      epochs=3, batch_size=16, seed=0, weight_decay=1e-4)
    metrics = fit(cfg, model, TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:]),
                  MultiClassHingeLoss(), defaults={"lr": 0.2})
    torch.save({"state": model.state_dict(), "metrics": metrics},
               Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.parametrize("optimizer", ["dfw"])
def test_two_processes_end_with_identical_weights(tmp_path: Path, optimizer: str) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), optimizer), nprocs=WORLD_SIZE,
             join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
               for r in range(WORLD_SIZE)]
    for key, value in results[0]["state"].items():
        assert torch.equal(value, results[1]["state"][key]), key
    # each rank saw half the data: 192 / (2 ranks * 16) = 6 steps per epoch, trained on both
    assert results[0]["metrics"]["train_loss"] == results[1]["metrics"]["train_loss"]
    assert results[0]["metrics"]["eval_accuracy"] > 0.7
    rows = read_metrics(tmp_path / "metrics.csv")  # written by rank 0 only, once per epoch
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.pt", "metrics.csv", "rank0.pt", "rank1.pt"]
