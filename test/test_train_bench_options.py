"""Options that were taken and then ignored or not recorded (a tester's findings, t16b):
`train optimizer --batch-size 8` was logged as "batch 8" and drew one problem per step, and
`benchmark-slam --max-iterations 3` wrote ratios that change meaning with the cap without
saying which cap made them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meetup_ros.cli import main
from meetup_ros.slam import benchmark

REPO = Path(__file__).resolve().parent.parent
BAG = REPO / "data" / "euroc_v1_01_easy_sample"


@pytest.mark.parametrize("size", ["8", "2"])
def test_train_optimizer_refuses_a_batch_size_other_than_1_before_any_bag_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    no_bag = tmp_path / "not_a_bag"
    no_bag.mkdir()
    out = tmp_path / "out"
    code = main(["train", "optimizer", "--bag", str(no_bag), "--out", str(out),
                 "--batch-size", size])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (f"meetup-ros train: error: --batch-size {size}: expected 1 (or none) for "
                   "train optimizer: each step unrolls the learned step on one two-view "
                   "problem\n")
    assert not out.exists()


def test_batch_size_1_or_none_is_taken_for_the_optimizer_and_any_for_the_others() -> None:
    from meetup_ros.cli.train import _check_batch_size

    for network, size in (("optimizer", None), ("optimizer", 1), ("depth", 8), ("vio", 16)):
        _check_batch_size(network, size)


def test_benchmark_slam_records_its_max_iterations_in_both_reports(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The solvers run on the first pair of each group only (the full run takes 36 s); the
    frontend figures, the SGBM reference and the plots are stubbed."""
    real = benchmark.solver_comparison

    def first_pair(pairs: list[Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return real(pairs[:1], *args, **kwargs)

    monkeypatch.setattr(benchmark, "solver_comparison", first_pair)
    monkeypatch.setattr(benchmark, "frontend_depth", lambda *_: {})
    monkeypatch.setattr(benchmark, "middlebury_sgbm_reference", dict)
    monkeypatch.setattr(benchmark, "plot_curves", lambda *_: None)
    out = tmp_path / "slam"
    code = main(["benchmark-slam", "--bag", str(BAG), "--data-root", str(shared_data),
                 "--out", str(out), "--max-iterations", "3"])
    stdout = capsys.readouterr().out
    assert code == 0
    full = json.loads((out / "benchmark_slam.json").read_text())
    summary = json.loads((out / "slam_report.json").read_text())
    groups = ("euroc_stereo", "middlebury_stereo", "mono", "mono_untouched", "mono_late")
    for key in groups:
        assert (full[key].get("max_iterations"), full[key]["tolerance"]) == (3, 0.005), key
    for name in ("stereo", "middlebury", "mono", "mono_untouched", "mono_late"):
        group = summary[f"solver_comparison_{name}"]
        assert (group.get("max_iterations"), group["tolerance"]) == (3, 0.005), name
    assert stdout.rstrip().endswith(
        "; at --max-iterations 3, not the default 20: the iteration ratios are not comparable "
        "to those in models/")
