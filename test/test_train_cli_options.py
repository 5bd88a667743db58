"""`meetup-ros train`: bad input is one line and exit 2, found before any bag is read; exit 1
means only "the governor is not proven"; --resume runs with this run's hyper-parameters."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from meetup_ros.cli import main
from meetup_ros.training import checkpoint
from meetup_ros.training.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
BAG = REPO / "data" / "euroc_v1_01_easy_sample"
# The controller on a small data set: ~1 s per run
SMALL_CONTROLLER = ["--set", "synthetic_samples=600", "--set", "depth_pairs=1"]


@pytest.fixture
def no_bag(tmp_path: Path) -> Path:
    """A folder that is no bag: a trainer that read it would fail naming the bag, so an
    error naming the option shows the option was checked first."""
    folder = tmp_path / "not_a_bag"
    folder.mkdir()
    return folder


# (network, --set, what the message says after "--set KEY=VALUE")
BAD_SETTINGS = [
    ("depth", "steps=0", "expected an integer >= 1"),
    ("depth", "steps=-1", "expected an integer >= 1"),
    ("depth", "steps=abc", "is not of type int"),
    ("depth", "code_dim=0", "expected an integer >= 1"),
    ("depth", "code_dim=-3", "expected an integer >= 1"),
    ("depth", "euroc_stride=0", "expected an integer >= 1"),
    ("depth", "data_root=/nonexistent/meetup", "expected an existing folder"),
    ("depth", "stride=2", "unknown depth option(s) ['stride']"),
    ("optimizer", "euroc_stride=-1", "expected an integer >= 1"),
    ("optimizer", "euroc_stride=0", "expected an integer >= 1"),
    ("optimizer", "steps=0", "expected an integer >= 1"),
    ("optimizer", "steps=1.5", "is not of type int"),
    ("optimizer", "unroll=0", "expected an integer >= 1"),
    ("optimizer", "hidden=0", "expected an integer >= 1"),
    ("optimizer", "mono_pairs=-1", "expected an integer >= 0"),
    ("optimizer", "pyramid=2", "expected 0 or 1"),
    ("optimizer", "mono_share=1.5", "expected a number in [0, 1]"),
    ("optimizer", "mono_share=nan", "is not a finite number"),
    ("optimizer", "data_root=/nonexistent/meetup", "expected an existing folder"),
    ("vio", "chunk=0", "expected an integer >= 1"),
    ("vio", "chunk=-5", "expected an integer >= 1"),
    ("vio", "steps_per_epoch=0", "expected an integer >= 1"),
    ("vio", "rest_fraction=2", "expected a fraction in [0, 1]"),
    ("vio", "rest_fraction=-1", "expected a fraction in [0, 1]"),
    ("vio", "heldout_s=-1", "expected seconds >= 0"),
    ("vio", "val_s=-1", "expected seconds >= 0"),
    ("vio", "val_s=nan", "is not a finite number"),
    ("vio", "image_dropout=1.5", "expected a fraction in [0, 1]"),
    ("vio", "image_weight=-1", "expected a loss weight > 0"),
    ("vio", "image_weight=0", "expected a loss weight > 0"),
    ("vio", "attitude_noise_deg=-1", "expected degrees >= 0"),
    ("vio", "imu_hidden=0", "expected an integer >= 1"),
    ("vio", "core_hidden=0", "expected an integer >= 1"),
    ("vio", "image_channels=0", "expected an integer >= 1"),
    ("controller", "hidden=0", "expected an integer >= 1"),
    ("controller", "hidden=abc", "is not of type int"),
    ("controller", "holdout_fraction=0", "expected a fraction in (0, 1)"),
    ("controller", "verify_timeout_s=-1", "expected seconds >= 0"),
]


@pytest.mark.parametrize(("network", "setting", "expected"), BAD_SETTINGS)
def test_bad_set_values_are_refused_before_any_bag_is_read(
    tmp_path: Path, no_bag: Path, capsys: pytest.CaptureFixture[str], network: str,
    setting: str, expected: str
) -> None:
    """Testers' values that failed after the data loading (depth steps=0, 10 s), deep in
    torch or numpy without the key (code_dim=0, chunk=0, rest_fraction=2, euroc_stride=0),
    or not at all (optimizer euroc_stride=-1 trained on no EuRoC pair and exited 0; vio
    heldout_s=-1, image_dropout=1.5)."""
    key, _, value = setting.partition("=")
    out = tmp_path / "out"
    code = main(["train", network, "--bag", str(no_bag), "--out", str(out), "--epochs", "1",
                 "--set", setting])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"meetup-ros train: error: train {network}: ") and err.count(
        "\n") == 1, err
    assert expected in err, err
    if not expected.startswith("unknown"):
        assert f"--set {key}=" in err and value.lstrip("-").split(".")[0] in err, err
    assert str(no_bag) not in err  # the bag was never read
    assert not out.exists()


def test_bad_set_values_are_refused_with_init_too(
    tmp_path: Path, no_bag: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture
) -> None:
    """With --init the network's sizes come from the weights: `imu_hidden=0` and
    `image_channels=0` were silently ignored. Out of range they are refused; in range but
    unlike the file's they are named in a warning (the file's shape wins)."""
    out = tmp_path / "out"
    assert main(["train", "vio", "--bag", str(no_bag), "--out", str(out), "--init", "vio.pt",
                 "--set", "image_channels=0"]) == 2
    assert "--set image_channels=0: expected an integer >= 1" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING):
        # the file loads, the warning comes, then the bag (no bag) is refused
        assert main(["train", "vio", "--bag", str(no_bag), "--out", str(out), "--init",
                     "vio.pt", "--set", "imu_hidden=7", "--set", "image_channels=3"]) == 2
        rgbd = tmp_path / "data" / "rgbd_depth_pairs"
        rgbd.mkdir(parents=True)
        assert main(["train", "depth", "--bag", str(no_bag), "--out", str(out), "--init",
                     "depth_code.pt", "--set", "code_dim=5",
                     "--set", f"data_root={rgbd.parent}"]) == 2
    assert "--set imu_hidden=7, image_channels=3 ignored: the network's shape comes from " \
           "--init" in caplog.text
    assert "--set code_dim=5 ignored: the network's shape comes from --init" in caplog.text


def _immutable_folder(path: Path) -> bool:
    """A folder nobody may write to, root included (chattr +i); False where unavailable."""
    path.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None:
        return False
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
    return done


@pytest.mark.parametrize("case", ["file", "under_a_file", "read_only", "read_only_parent"])
def test_an_out_that_cannot_be_written_is_refused_before_any_bag_is_read(
    tmp_path: Path, no_bag: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """An existing file, or a read-only folder, as --out was a FileExistsError or
    PermissionError traceback after the data loading or the first epoch (~11 s, depth)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    locked = tmp_path / "locked"
    out = {"file": a_file, "under_a_file": a_file / "sub", "read_only": locked,
           "read_only_parent": locked / "sub" / "out"}[case]
    expected = {"file": "exists and is not a folder", "under_a_file": "is not a folder",
                "read_only": "cannot write there", "read_only_parent": "cannot write there"}
    if case.startswith("read_only") and not _immutable_folder(locked):
        pytest.skip("no chattr +i here to make a folder read-only for this user")
    try:
        code = main(["train", "depth", "--bag", str(no_bag), "--out", str(out)])
    finally:
        if locked.exists():
            subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"meetup-ros train: error: --out {str(out)!r}: ") and (
        expected[case] in err), err
    assert err.count("\n") == 1


def test_controller_resume_runs_with_the_new_lr_and_mismatches_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The tester's repro: 2 epochs, then --resume to 4 with --lr 0.01 --momentum 0
    --weight-decay 0.1: the checkpoint's optimizer state put the old values back (metrics.csv
    said lr 0.1). And a resume that does not fit (another optimizer, other sizes, a weights
    file as checkpoint.pt) was a TrainingError traceback with exit 1, the "not proven" code.
    """
    out = tmp_path / "out"
    base = ["train", "controller", "--bag", str(BAG), "--out", str(out), *SMALL_CONTROLLER,
            "--set", "verify_timeout_s=0"]
    assert main([*base, "--epochs", "2"]) == 1  # the proof skipped: not proven
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        assert main([*base, "--epochs", "4", "--resume", "--lr", "0.01", "--momentum", "0",
                     "--weight-decay", "0.1"]) == 1
    assert "--lr 0.1 -> 0.01, --momentum 0.9 -> 0.0, --weight-decay 0.0 -> 0.1" in caplog.text
    assert [row["lr"] for row in read_metrics(out / "metrics.csv")] == [0.1, 0.1, 0.01, 0.01]
    state = checkpoint.load(out / "checkpoint.pt")
    group = state["optimizer"]["param_groups"][0]
    assert (group["eta"], group["momentum"], group["weight_decay"]) == (0.01, 0.0, 0.1)
    assert (state["config"]["lr"], state["config"]["momentum"],
            state["config"]["weight_decay"]) == (0.01, 0.0, 0.1)
    capsys.readouterr()

    def refused(*extra: str) -> str:
        assert main([*base, "--epochs", "5", "--resume", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("meetup-ros train: error: train "
                                                       "controller: checkpoint "), err
        return err

    assert "was trained with --optimizer dfw, not sgd" in refused("--optimizer", "sgd")
    err = refused("--set", "hidden=8")
    assert "holds weights of another network than GovernorNet, or of one with other sizes" in (
        err) and "it was trained with --set depth_pairs=1 synthetic_samples=600" in err
    shutil.copy(REPO / "models" / "vio.pt", out / "checkpoint.pt")
    assert "is not a training checkpoint" in refused()


def test_verify_timeout_zero_exits_1_and_reports_the_governor_as_not_proven(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`--set verify_timeout_s=0` skipped the proof and exited 0, though the README says
    `train controller` exits 1 whenever the governor is not proven on both properties."""
    with caplog.at_level(logging.WARNING):
        code = main(["train", "controller", "--bag", str(BAG), "--out", str(tmp_path),
                     "--epochs", "1", *SMALL_CONTROLLER, "--set", "verify_timeout_s=0"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verify_skipped"] == 1.0
    assert report["property_proven"] == report["clearance_property_proven"] == -1.0
    assert "proof of the exported network was skipped" in caplog.text
    assert "NOT proven" in caplog.text
    assert (tmp_path / "governor.onnx").is_file()  # written, to inspect


def test_a_non_finite_loss_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SGD at lr 1e30: the loss turns NaN in the first epoch; it was a traceback with exit 1,
    and named "the checkpoint of epoch 0", which does not exist."""
    code = main(["train", "controller", "--bag", str(BAG), "--out", str(tmp_path), "--epochs",
                 "2", *SMALL_CONTROLLER, "--set", "verify_timeout_s=0", "--optimizer", "sgd",
                 "--lr", "1e30", "--momentum", "0"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "fit: the training loss is nan at epoch 1" in err, err
    assert "No checkpoint was written" in err and "epoch 0" not in err
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize(("options", "expected"), [
    (["--device", "meta"], "--device 'meta': expected cpu, cuda or cuda:N"),
    (["--device", "mps"], "--device 'mps': expected cpu, cuda or cuda:N"),
    (["--device", "xla"], "--device 'xla': expected cpu, cuda or cuda:N"),
    (["--device", ""], "--device '': expected cpu, cuda or cuda:N"),
    (["--seed", "-1"], "--seed -1: expected an integer in [0, 4294967295]"),
    (["--seed", "99999999999999999999"], "--seed 99999999999999999999: expected an integer"),
    (["--momentum", "1"], "--momentum 1.0: expected a value in [0, 1) for --optimizer dfw"),
    (["--momentum", "1.5", "--optimizer", "sgd"], "--momentum 1.5: expected a value in [0, 1) "
                                                  "for --optimizer sgd"),
])
def test_bad_device_seed_or_momentum_is_one_line_before_any_bag_is_read(
    tmp_path: Path, no_bag: Path, capsys: pytest.CaptureFixture[str], options: list[str],
    expected: str
) -> None:
    """--device meta|mps|xla|'' was a RuntimeError traceback (exit 1) after the bag was read
    (meta after creating metrics.csv); --seed -1 was numpy's "expected non-negative integer"
    without the option, and --momentum 1 was refused by DFW, both after the bag was read."""
    out = tmp_path / "out"
    code = main(["train", "controller", "--bag", str(no_bag), "--out", str(out), *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("meetup-ros train: error: ") and err.count("\n") == 1, err
    assert expected in err, err
    assert str(no_bag) not in err and not out.exists()


@pytest.mark.parametrize(("network", "name"), [("controller", "checkpoint.pt"),
                                               ("depth", "metrics.csv"),
                                               ("controller", "governor.onnx"),
                                               ("vio", "vio.pt")])
def test_an_output_file_that_is_a_folder_is_refused_before_any_bag_is_read(
    tmp_path: Path, no_bag: Path, capsys: pytest.CaptureFixture[str], network: str, name: str
) -> None:
    """checkpoint.pt, metrics.csv or governor.onnx present as a folder: an IsADirectoryError
    traceback once training ended (and --resume said "no checkpoint, starting from
    scratch")."""
    (tmp_path / name).mkdir()
    code = main(["train", network, "--bag", str(no_bag), "--out", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (f"meetup-ros train: error: --out {str(tmp_path)!r}: {name} there is not a "
                   "file (a folder?); the run writes it: move it away or choose another "
                   "--out\n")


def test_only_rank_0_exports_and_proves_the_governor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun `train controller` exported governor.onnx and ran the proof on every
    rank (the other trainers write on rank 0 only, as the README says): two processes wrote
    one file, and the proof ran twice. A rank other than 0 now trains and writes nothing."""
    from meetup_ros.control.training import train_controller
    from meetup_ros.training.config import TrainConfig

    cfg = TrainConfig(bags=(BAG,), out_dir=tmp_path, epochs=1,
                      extra={"synthetic_samples": "600", "depth_pairs": "1",
                             "verify_timeout_s": "0"})
    monkeypatch.setenv("RANK", "1")  # what torchrun sets; read by is_main_process
    metrics = train_controller(cfg)
    assert not (tmp_path / "governor.onnx").exists()
    assert "onnx_max_abs_error" not in metrics and "property_proven" not in metrics
    assert "accuracy_heldout_real" in metrics
