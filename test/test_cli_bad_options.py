"""Bad command-line options of `meetup-ros demo` and `meetup-ros train` are refused up
front, naming the option (exit 2, no traceback), before any node starts or bag is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meetup_ros.cli import main

BAG = Path(__file__).resolve().parent.parent / "data" / "euroc_v1_01_easy_sample"


@pytest.mark.parametrize(("option", "value"), [
    ("--rate", "0"), ("--rate", "nan"), ("--rate", "-2"), ("--rate", "inf"),
    ("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "inf"),
])
def test_demo_refuses_a_bad_rate_or_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            option: str, value: str) -> None:
    """`demo --rate 0` ended in the replay node's BagError traceback (exit 1), and
    `--timeout 0` ran the nodes for ~11 s before failing; `replay --rate 0` was already a
    named error."""
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), option, value]) == 2
    err = capsys.readouterr().err
    assert f"meetup-ros demo: error: {option} {float(value)!r}: expected a finite value > 0" in (
        err)
    assert not out_dir.exists()  # nothing started


def test_demo_names_the_missing_bag_as_typed(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh user's `demo --bag bags/missing_bag` named only the data/ fallback."""
    assert main(["demo", "--bag", "bags/missing_bag", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "bag 'bags/missing_bag' does not exist (nor " in err and "data" in err


def test_demo_bad_rate_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meetup_ros.cli", "demo", "--out", str(tmp_path / "d"),
         "--rate", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--rate 0.0: expected a finite value > 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_refuses_zero_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--threads 0` was torch's RuntimeError traceback."""
    assert main(["train", "controller", "--bag", str(BAG), "--out", str(tmp_path / "o"),
                 "--threads", "0"]) == 2
    assert "meetup-ros train: error: --threads 0: expected an integer >= 1" in (
        capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("setting", ["verify_timeout_s=inf", "synthetic_samples=-1"])
def test_train_controller_refuses_bad_settings_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str) -> None:
    """`--set verify_timeout_s=inf` trained, then overflowed in the verifier (traceback,
    exit 1: "not proven"); `synthetic_samples=-1` read the bag, then failed with numpy's
    "negative dimensions are not allowed". Both now stop before any bag is read."""
    key = setting.partition("=")[0]
    assert main(["train", "controller", "--bag", str(BAG), "--out", str(tmp_path / "o"),
                 "--epochs", "1", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert "meetup-ros train: error: train controller: " in err
    assert f"{key}=" in err and ("--set" in err or "controller option" in err), err
    assert not (tmp_path / "o").exists()
