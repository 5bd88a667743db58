"""training.loop.fit: metrics.csv, atomic checkpoints, exact resume, both data paths."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
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


def test_a_corrupt_checkpoint_on_resume_is_called_a_checkpoint(tmp_path: Path) -> None:
    """A resumed run's corrupt checkpoint.pt was named a "weights file" (a tester's)."""
    _run(tmp_path, 1)
    ckpt = tmp_path / CHECKPOINT_NAME
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match=rf"^checkpoint '{re.escape(str(ckpt))}'"):
        _run(tmp_path, 2, resume=True)


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


@pytest.mark.parametrize("optimizer", ["dfw", "sgd", "adam"])
def test_resume_runs_with_this_runs_lr_momentum_and_weight_decay(
    tmp_path: Path, optimizer: OptimizerName, caplog: pytest.LogCaptureFixture
) -> None:
    """`--resume --lr 0.01 --momentum 0 --weight-decay 0.1` logged the new lr and wrote it to
    the checkpoint's config, but the optimizer state loaded from the checkpoint put the old
    values back: training, and metrics.csv's lr, went on with them."""
    train, held_out = _data()
    first = TrainConfig(bags=(Path("unused"),), out_dir=tmp_path, optimizer=optimizer,
                        epochs=2, batch_size=32, seed=3, lr=0.2, momentum=0.9,
                        weight_decay=1e-4)
    fit(first, _model(), train, held_out, MultiClassHingeLoss())
    resumed = dataclasses.replace(first, epochs=4, resume=True, lr=0.05, momentum=0.0,
                                  weight_decay=0.1)
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(resumed, _model(), train, held_out, MultiClassHingeLoss())
    state = checkpoint.load(tmp_path / CHECKPOINT_NAME)
    group = state["optimizer"]["param_groups"][0]
    rate_key = {"dfw": "eta", "sgd": "initial_lr", "adam": "lr"}[optimizer]
    assert group[rate_key] == 0.05
    assert group["weight_decay"] == 0.1
    assert "--lr 0.2 -> 0.05" in caplog.text and "--weight-decay 0.0001 -> 0.1" in caplog.text
    if optimizer != "adam":  # Adam has no momentum option
        assert group["momentum"] == 0.0 and "--momentum 0.9 -> 0.0" in caplog.text
    assert state["config"]["lr"] == 0.05 and state["config"]["weight_decay"] == 0.1
    rows = read_metrics(tmp_path / "metrics.csv")
    # (SGD's 2-epoch schedule divided by 10 at epoch 2)
    assert [r["lr"] for r in rows[:2]] == pytest.approx([0.2, 0.02 if optimizer == "sgd" else 0.2])
    # SGD's schedule divides by 10 at epochs 2 and 3 of 4: 0.05 / 10, then / 100
    expected = [0.005, 0.0005] if optimizer == "sgd" else [0.05, 0.05]
    assert [r["lr"] for r in rows[2:]] == pytest.approx(expected)
    # the same command line again changes nothing and says nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(dataclasses.replace(resumed, epochs=5), _model(), train, held_out,
            MultiClassHingeLoss())
    assert "checkpoint's values replaced" not in caplog.text


@pytest.mark.parametrize("optimizer", ["dfw", "sgd", "adam"])
def test_a_bare_resume_keeps_the_checkpoints_lr_momentum_and_weight_decay(
    tmp_path: Path, optimizer: OptimizerName, caplog: pytest.LogCaptureFixture
) -> None:
    """A tester's `train vio --lr 0.0003`, then `--resume` with no --lr: the resumed run went
    on at the trainer's default 0.001 (train loss 0.224 -> 0.421), because an option left out
    counted as asking for its default. Only the options the command line sets replace the
    checkpoint's (TrainConfig.given)."""
    train, held_out = _data()
    first = TrainConfig(bags=(Path("unused"),), out_dir=tmp_path, optimizer=optimizer,
                        epochs=2, batch_size=32, seed=3, lr=0.05, momentum=0.5,
                        weight_decay=1e-3, given=frozenset({"lr", "momentum", "weight_decay"}))
    fit(first, _model(), train, held_out, MultiClassHingeLoss(), defaults={"lr": 0.2})
    bare = TrainConfig(bags=(Path("unused"),), out_dir=tmp_path, optimizer=optimizer,
                       epochs=3, batch_size=32, seed=3, resume=True, given=frozenset())
    with caplog.at_level(logging.INFO, logger="meetup_ros.training.loop"):
        fit(bare, _model(), train, held_out, MultiClassHingeLoss(), defaults={"lr": 0.2})
    assert "checkpoint's values replaced" not in caplog.text
    state = checkpoint.load(tmp_path / CHECKPOINT_NAME)
    group = state["optimizer"]["param_groups"][0]
    rate_key = {"dfw": "eta", "sgd": "initial_lr", "adam": "lr"}[optimizer]
    assert group[rate_key] == 0.05 and group["weight_decay"] == 1e-3
    assert state["config"]["lr"] == 0.05 and state["config"]["weight_decay"] == 1e-3
    if optimizer != "adam":
        assert group["momentum"] == 0.5 and state["config"]["momentum"] == 0.5
    assert "lr=0.05" in caplog.text  # the start-up line says what runs
    rows = read_metrics(tmp_path / "metrics.csv")
    if optimizer != "sgd":  # (SGD's schedule divides its lr by 10 at epoch 2)
        assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.05, 0.05])


def test_a_non_finite_loss_in_the_first_epoch_points_at_no_checkpoint(tmp_path: Path) -> None:
    """A NaN loss at the first step said "lower the learning rate?" and named "the
    checkpoint of epoch 0", which does not exist (a tester's negative loss weight)."""
    train, held_out = _data()

    def nan_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return MultiClassHingeLoss()(output, target) * float("nan")

    with pytest.raises(TrainingError) as caught:
        fit(_cfg(tmp_path, 2), _model(), train, held_out, nan_loss, defaults={"lr": 0.2})
    message = str(caught.value)
    assert "loss is nan at epoch 1, step 1; at the starting weights, before any step" in message
    assert "No checkpoint was written" in message
    assert "epoch 0" not in message and "learning rate" not in message
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_dfw_refuses_a_negative_loss(tmp_path: Path) -> None:
    """DFW's step size assumes a loss >= 0: with a negative one its gamma is 0 and only the
    weight decay moves the weights, silently. SGD has no such assumption."""
    train, held_out = _data()

    def negative(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return MultiClassHingeLoss()(output, target) - 10.0

    with pytest.raises(TrainingError, match=r"loss is -\d.*epoch 1, step 1; DFW's step size "
                                            r"assumes a loss >= 0.*No checkpoint was written"):
        fit(_cfg(tmp_path / "dfw", 1), _model(), train, held_out, negative,
            defaults={"lr": 0.2})
    fit(_cfg(tmp_path / "sgd", 1, optimizer="sgd"), _model(), train, held_out, negative,
        defaults={"lr": 0.2})


_KILLED_WRITER = """
import os, sys, time
from meetup_ros.training import checkpoint

def stalled_fsync(fd):  # the kill lands inside the write, as a SIGKILL or power loss would
    print("writing", flush=True)
    time.sleep(120)

os.fsync = stalled_fsync
checkpoint.save(sys.argv[1], {"epoch": 99})
"""


def test_a_write_killed_midway_leaves_a_temp_file_the_next_write_removes(
        tmp_path: Path) -> None:
    """SIGKILL inside a checkpoint write left `.checkpoint.pt.XXXXXXXX.tmp` for good (the
    checkpoint itself stayed intact); the next successful write removes it, and only it."""
    _run(tmp_path, 1)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path / CHECKPOINT_NAME)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        assert child.stdout is not None and child.stdout.readline() == "writing\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    stale = checkpoint.stale_temp_files(tmp_path / CHECKPOINT_NAME)
    assert len(stale) == 1 and stale[0].name.startswith(".checkpoint.pt.")
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
    # metrics.csv is written the same way: its leftover goes too; other files' temporaries
    # and look-alikes stay
    (tmp_path / ".metrics.csv.abcd1234.tmp").write_text("a killed write of metrics.csv")
    others = [".vio.pt.abcd1234.tmp", ".checkpoint.pt.notes.tmp", "checkpoint.pt.tmp",
              ".checkpoint.pt.abcd1234.tmp.keep"]
    for name in others:
        (tmp_path / name).write_text("not ours")
    _run(tmp_path, 2, resume=True)
    assert not stale[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CHECKPOINT_NAME, "metrics.csv", *others])
    assert checkpoint.load(tmp_path / CHECKPOINT_NAME)["epoch"] == 2


def test_a_resume_without_a_checkpoint_trains_as_a_fresh_run(tmp_path: Path) -> None:
    """--resume into an --out with no checkpoint yet (a run killed in its first epoch) skipped
    the per-rank seeding: the dropout masks came from where the model's initialisation left
    torch's RNG, and the weights differed from the same command without --resume."""
    fresh, model_fresh = _run(tmp_path / "fresh", 2)
    resumed, model_resumed = _run(tmp_path / "resumed", 2, resume=True)
    for a, b in zip(model_fresh.state_dict().values(), model_resumed.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert resumed["train_loss"] == fresh["train_loss"]


@pytest.mark.parametrize("optimizer", ["dfw", "sgd", "adam"])
def test_a_checkpoint_with_bad_optimizer_state_is_refused_naming_it(
        tmp_path: Path, optimizer: OptimizerName) -> None:
    """A checkpoint (a valid archive) whose optimizer state holds a momentum buffer or moment
    of the wrong shape failed inside torch._foreach_add_ with a traceback; one whose DFW eta
    was -1 trained uphill (0.26 -> 15.2) without a word."""
    _run(tmp_path, 1, optimizer=optimizer)
    ckpt = tmp_path / CHECKPOINT_NAME
    original = ckpt.read_bytes()
    good = checkpoint.load(ckpt)
    state = good["optimizer"]["state"][0]
    key = next(k for k, v in state.items() if isinstance(v, torch.Tensor) and v.dim())
    state[key] = torch.zeros(5)
    checkpoint.save(ckpt, good)
    with pytest.raises(TrainingError, match=rf"checkpoint .*{CHECKPOINT_NAME}.*momentum buffer "
                       r"of parameter 0 is \(5,\)|checkpoint .*'" + key + r"' of parameter 0 "
                       r"of group 0 has shape \(5,\), the parameter \(16, 6\)"):
        _run(tmp_path, 2, resume=True, optimizer=optimizer)
    if optimizer == "dfw":
        ckpt.write_bytes(original)
        good = checkpoint.load(ckpt)
        good["optimizer"]["param_groups"][0]["eta"] = -1.0
        checkpoint.save(ckpt, good)
        with pytest.raises(TrainingError, match=r"param group 0 of the loaded state: eta "
                                                r"\(maximal step\) must be a positive number, "
                                                r"got -1\.0"):
            _run(tmp_path, 2, resume=True)


def test_a_folder_in_place_of_the_checkpoint_or_metrics_is_refused_before_training(
        tmp_path: Path) -> None:
    """--resume took a checkpoint.pt folder for "no checkpoint, starting from scratch", and
    the first write after the epoch failed with IsADirectoryError (metrics.csv likewise)."""
    for name in (CHECKPOINT_NAME, "metrics.csv"):
        out = tmp_path / name.replace(".", "_")
        (out / name).mkdir(parents=True)
        with pytest.raises(TrainingError, match=rf"{name}' exists and is not a file"):
            _run(out, 1, resume=True)
        assert sorted(p.name for p in out.iterdir()) == [name]


def test_a_metrics_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """A resumed run's metrics.csv that was not UTF-8 gave "'utf-8' codec can't decode byte
    0xff" without the file's name (a ValueError: the CLI's one line and exit 2)."""
    _run(tmp_path, 1)
    metrics = tmp_path / "metrics.csv"
    metrics.write_bytes(b"epoch,train_loss\n1,\xff\xfe\n")
    with pytest.raises(ValueError, match=rf"metrics file '{re.escape(str(metrics))}' cannot "
                                         r"be read.*utf-8.*move it away"):
        _run(tmp_path, 2, resume=True)
    metrics.write_text("epoch,train_loss\n1,not a number\n")
    with pytest.raises(ValueError, match=r"metrics file .* cannot be read.*not a number"):
        _run(tmp_path, 2, resume=True)


_CONCURRENT_WRITER = """
import os, sys
from meetup_ros.training import checkpoint

real_fsync = os.fsync

def held_fsync(fd):  # hold the write open until the test lets it finish
    print("writing", flush=True)
    sys.stdin.readline()
    real_fsync(fd)

os.fsync = held_fsync
checkpoint.save(sys.argv[1], {"epoch": 7})
print("done", flush=True)
"""


def test_a_write_keeps_a_live_writers_temp_file_and_removes_a_dead_ones(
        tmp_path: Path) -> None:
    """Each write removed every `.NAME.XXXXXXXX.tmp`, also another process's still being
    written: that writer's rename then failed with FileNotFoundError (18 of 200 writes with
    two writers on one path). Temp files now carry their writer's pid; only those of
    processes that are gone (or older than STALE_TEMP_AGE_S) are removed."""
    target = tmp_path / CHECKPOINT_NAME
    child = subprocess.Popen(
        [sys.executable, "-c", _CONCURRENT_WRITER, str(target)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "writing\n"
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        dead_temp = tmp_path / f".{CHECKPOINT_NAME}.{int(dead.stdout)}.abcd1234.tmp"
        dead_temp.write_text("left by a killed writer")
        old_temp = tmp_path / f".{CHECKPOINT_NAME}.{child.pid}.old_1234.tmp"
        old_temp.write_text("a live pid, but untouched for too long: a reused pid")
        os.utime(old_temp, (1.0, 1.0))
        checkpoint.save(target, {"epoch": 1})  # while the child's write is open
        live = [p.name for p in tmp_path.iterdir() if p.name.startswith(
            f".{CHECKPOINT_NAME}.{child.pid}.")]
        assert len(live) == 1 and live[0] != old_temp.name, live
        assert not dead_temp.exists() and not old_temp.exists()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait(timeout=30)
    assert checkpoint.load(target)["epoch"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]


def test_a_resume_says_each_other_option_that_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tester's resume with another batch size, seed, --set option and bag went on without
    a word (and the checkpoint then recorded them as the run's)."""
    train, held_out = _data()
    first = TrainConfig(bags=(Path("a.bag"),), out_dir=tmp_path, epochs=1, batch_size=32,
                        seed=3, extra={"hidden": "16"})
    fit(first, _model(), train, held_out, MultiClassHingeLoss())
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(dataclasses.replace(first, epochs=2, resume=True), _model(), train, held_out,
            MultiClassHingeLoss())
    assert "options other than its run's" not in caplog.text
    caplog.clear()
    changed = dataclasses.replace(first, epochs=3, resume=True, batch_size=16, seed=4,
                                  bags=(Path("b.bag"),), extra={})
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(changed, _model(), train, held_out, MultiClassHingeLoss())
    for said in ("--batch-size 32 -> 16", "--seed 3 -> 4", "--bag ['a.bag'] -> ['b.bag']",
                 "--set hidden '16' -> (not given)"):
        assert said in caplog.text, said
    assert "--epochs" not in caplog.text  # given: more epochs is what a resume is for
    caplog.clear()
    bare = dataclasses.replace(changed, epochs=None)  # the trainer's default, 10 here
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(bare, _model(), train, held_out, MultiClassHingeLoss())
    assert "--epochs 3 -> 10 (not given: the trainer's default)" in caplog.text


def test_a_fresh_run_into_a_folder_with_a_checkpoint_says_it_replaces_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train, held_out = _data()
    cfg = TrainConfig(bags=(Path("a.bag"),), out_dir=tmp_path, epochs=1, batch_size=32)
    fit(cfg, _model(), train, held_out, MultiClassHingeLoss())
    assert "previous run's checkpoint" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(cfg, _model(), train, held_out, MultiClassHingeLoss())
    assert "holds a previous run's checkpoint; starting from scratch" in caplog.text


class _OtherNet(torch.nn.Module):
    """Another trainer's network (a class of its own, as each trainer's is)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_another_trainers_checkpoint_in_the_folder_is_refused_and_kept(tmp_path: Path) -> None:
    """`train vio --out F` where `train depth` had left its checkpoint: the fresh run replaced
    it after its first epoch (that run could never resume), a --resume failed on its keys."""
    train, held_out = _data()
    fit(_cfg(tmp_path, 1), _model(), train, held_out, MultiClassHingeLoss())
    ckpt = tmp_path / CHECKPOINT_NAME
    before = ckpt.read_bytes()
    for resume in (False, True):
        with pytest.raises(TrainingError, match=r"is the checkpoint of a Sequential run "
                                                r"\(another trainer\), not of _OtherNet"):
            fit(_cfg(tmp_path, 1, resume=resume), _OtherNet(), train, held_out,
                MultiClassHingeLoss())
    assert ckpt.read_bytes() == before


def test_a_fresh_run_over_a_damaged_checkpoint_replaces_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train, held_out = _data()
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="meetup_ros.training.loop"):
        fit(_cfg(tmp_path, 1), _model(), train, held_out, MultiClassHingeLoss())
    assert "holds a previous run's checkpoint; starting from scratch" in caplog.text
    assert checkpoint.load(tmp_path / CHECKPOINT_NAME)["epoch"] == 1
    with pytest.raises(checkpoint.CheckpointError):
        (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
        fit(_cfg(tmp_path, 2, resume=True), _model(), train, held_out, MultiClassHingeLoss())
