"""A tester's findings on `train optimizer`, `benchmark-slam` and `--resume` (t14b): the
held-out groups kept out of training and checked by the benchmark, no run without a held-out
pair, a resume refusal that names what differs, and depth and step weights checked to belong
together."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from meetup_ros.slam import SlamError, benchmark, learned, training
from meetup_ros.slam import data as slam_data
from meetup_ros.slam.learned import LearnedStep
from meetup_ros.slam.training import StepTrainOptions
from meetup_ros.training.checkpoint import load_weights, save_weights

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
BAG = REPO / "data" / "euroc_v1_01_easy_sample"


def test_mono_pairs_that_reach_the_late_group_are_refused_naming_the_limit() -> None:
    """`--set mono_pairs=100000` trained on KITTI pairs 8-49, 35-49 being benchmark-slam's
    held-out "mono_late" group."""
    assert training.MAX_MONO_PAIRS == slam_data.MONO_LATE_FROM - slam_data.MONO_TRAIN_FROM == 27
    assert StepTrainOptions.from_extra({"mono_pairs": "27"}).mono_pairs == 27
    for value in ("28", "100000"):
        with pytest.raises(SlamError, match=rf"--set mono_pairs={value}: expected an integer "
                           r">= 0 and <= 27 \(training pairs 8\.\.34 .*\"mono_late\""):
            StepTrainOptions.from_extra({"mono_pairs": value})


def test_a_euroc_stride_that_leaves_no_held_out_pair_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--set euroc_stride=1000` trained with 0 held-out pairs, reported the held-out figure
    as null and exited 0 (the bundled bag's held-out pairs are 76..94)."""
    from meetup_ros.cli import main

    code = main(["train", "optimizer", "--bag", str(BAG), "--out", str(tmp_path), "--epochs",
                 "1", "--threads", "1", "--set", "steps=1", "--set", "unroll=1",
                 "--set", "euroc_stride=1000"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert ("--set euroc_stride=1000: takes none of the held-out EuRoC pairs 76..94 of bag "
            f"{str(BAG)!r}, so nothing would be held out; expected at most 19") in err
    assert not (tmp_path / "slam_optimizer.pt").exists()
    assert not (tmp_path / "metrics.csv").exists()
    # a stride above 19 that lands on a held-out pair is fine; one that does not is not
    training.check_held_out_stride([BAG], 19)
    training.check_held_out_stride([BAG], 80)
    with pytest.raises(SlamError, match=r"--set euroc_stride=50: takes none"):
        training.check_held_out_stride([BAG], 50)


def _fast_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_benchmark with its solvers, frontend and plots stubbed: the pairs and the report's
    marks are real, the figures are not (the real run takes 36 s)."""
    def comparison(pairs: list[Any], *_: Any, **__: Any) -> dict[str, Any]:
        return {"pairs": len(pairs), "learned_over_gn_iterations": 0.5, "curves": {},
                "per_pair": [{"pair": p.name} for p in pairs]}

    monkeypatch.setattr(benchmark, "solver_comparison", comparison)
    monkeypatch.setattr(benchmark, "frontend_depth", lambda *_: {})
    monkeypatch.setattr(benchmark, "middlebury_sgbm_reference", dict)
    monkeypatch.setattr(benchmark, "plot_curves", lambda *_: None)


def test_benchmark_marks_a_group_the_step_was_trained_on(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Weights whose ``train`` list holds KITTI pairs 35-49 (as `mono_pairs=100000` made):
    benchmark-slam reported their mono_late figure as held out, with no warning. Now the
    group is named in a warning and marked in benchmark_slam.json and slam_report.json; the
    shipped step's groups are all held out."""
    _fast_benchmark(monkeypatch)
    step = LearnedStep.from_weights(MODELS / "slam_optimizer.pt")
    _, meta = load_weights(MODELS / "slam_optimizer.pt", kind="slam_optimizer")
    late = [f"KITTI_sequence_{s}_{i:03d}" for s in (1, 2) for i in range(35, 50)]
    contaminated = tmp_path / "opt.pt"
    save_weights(contaminated, step.state_dict(),
                 **{**meta, "train": [*meta["train"], *late]})
    with caplog.at_level(logging.WARNING, logger="meetup_ros.slam.benchmark"):
        report = benchmark.run_benchmark(BAG, shared_data, tmp_path / "a",
                                         MODELS / "depth_code.pt", contaminated)
    assert report["mono_late"]["held_out"] is False
    assert report["mono_late"]["trained_on"] == sorted(late)
    assert report["groups_trained_on"] == ["mono_late"]
    for key in ("euroc_stereo", "middlebury_stereo", "mono", "mono_untouched"):
        assert report[key]["held_out"] is True and report[key]["trained_on"] == [], key
    assert "benchmark group mono_late: 30 of its 30 pairs are training pairs of" in caplog.text
    assert str(contaminated) in caplog.text
    written = json.loads((tmp_path / "a" / "benchmark_slam.json").read_text())
    assert written["mono_late"]["held_out"] is False
    summary = json.loads((tmp_path / "a" / "slam_report.json").read_text())
    assert summary["solver_comparison_mono_late"]["held_out"] is False

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meetup_ros.slam.benchmark"):
        shipped = benchmark.run_benchmark(BAG, shared_data, tmp_path / "b",
                                          MODELS / "depth_code.pt",
                                          MODELS / "slam_optimizer.pt")
    assert shipped["groups_trained_on"] == []
    assert all(shipped[k]["held_out"] is True for k in
               ("euroc_stereo", "middlebury_stereo", "mono", "mono_untouched", "mono_late"))
    assert not caplog.records


def test_a_resume_with_other_sizes_names_the_set_values_that_differ_and_the_shapes(
    tmp_path: Path,
) -> None:
    """`train depth --set steps=3`, then `--resume --set code_dim=8`: the refusal said only
    "it was trained with --set steps=3", pointing at steps, which had not changed. It now
    sets this run's --set values beside the checkpoint's and names the tensors that do not
    fit, with their shapes."""
    import torch
    from torch.utils.data import TensorDataset

    from meetup_ros.optim import MultiClassHingeLoss
    from meetup_ros.training.config import TrainConfig
    from meetup_ros.training.loop import TrainingError, fit

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,),
                                                                         generator=g))

    def run(width: int, extra: dict[str, str], resume: bool) -> None:
        net = torch.nn.Sequential(torch.nn.Linear(6, width), torch.nn.ReLU(),
                                  torch.nn.Linear(width, 3))
        cfg = TrainConfig(bags=(Path("unused"),), out_dir=tmp_path, epochs=2 if resume else 1,
                          batch_size=32, resume=resume, extra=extra)
        fit(cfg, net, data, None, MultiClassHingeLoss(), defaults={"lr": 0.1})

    run(32, {"steps": "3"}, False)
    with pytest.raises(TrainingError) as caught:
        run(8, {"steps": "3", "code_dim": "8"}, True)
    message = str(caught.value)
    assert "\n" not in message
    assert ("holds weights of another network than Sequential, or of one with other sizes "
            "than this run's (it was trained with --set steps=3; this run's --set differs: "
            "code_dim=8 here, not set (the default) there): tensors of other shapes: "
            "0.weight (32, 6) there, (8, 6) here; 0.bias (32,) there, (8,) here; "
            "2.weight (3, 32) there, (3, 8) here") in message
    # a --set the checkpoint had and this run drops is named too
    with pytest.raises(TrainingError, match=r"this run's --set differs: code_dim not set "
                       r"here, code_dim=8 there"):
        run(8, {"code_dim": "8"}, False)
        run(32, {}, True)


def _depth_weights(path: Path, code_dim: int) -> Path:
    """Untrained depth-code weights of ``code_dim`` (seeded), as `train depth` writes them."""
    import torch

    from meetup_ros.slam.depth_code import DepthCodeConfig, DepthCodeModel, DepthCodeNet

    torch.manual_seed(0)
    model = DepthCodeModel(DepthCodeNet(DepthCodeConfig(code_dim=code_dim)))
    save_weights(path, model.net.state_dict(), **model.metadata())
    return path


def test_new_step_weights_record_their_depth_network_and_a_mismatch_is_warned(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The step recorded only the path of its depth weights (absolute, from the author's
    machine), and a code_dim 8 network ran with the shipped 32-code step without a word. New
    step weights record the network's code_dim and digest; another network is warned of (not
    refused), the shipped pair loads without a warning (it records no digest: unknown)."""
    from meetup_ros.cli import main
    from meetup_ros.slam.depth_code import DepthCodeModel

    shipped_depth = DepthCodeModel.from_weights(MODELS / "depth_code.pt")
    with caplog.at_level(logging.INFO, logger="meetup_ros.slam.learned"):
        status, detail = learned.check_depth_pairing(
            shipped_depth, MODELS / "depth_code.pt", MODELS / "slam_optimizer.pt")
    assert status == "unknown" and "records no digest" in detail
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    out = tmp_path / "opt"
    assert main(["train", "optimizer", "--bag", str(BAG), "--out", str(out), "--epochs", "1",
                 "--threads", "1", "--set", "steps=1", "--set", "unroll=1", "--set",
                 "mono_pairs=1", "--set", f"data_root={shared_data}"]) == 0, (
        capsys.readouterr().err)
    step = out / "slam_optimizer.pt"
    _, meta = load_weights(step, kind="slam_optimizer")
    assert meta["depth_code_dim"] == 32
    assert meta["depth_weights_sha256"] == learned.depth_network_digest(shipped_depth)
    assert meta["depth_weights"] == "models/depth_code.pt"  # inside the repository: relative

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert learned.check_depth_pairing(shipped_depth, MODELS / "depth_code.pt",
                                            step)[0] == "matches"
        assert not caplog.records
        code8 = _depth_weights(tmp_path / "code8.pt", 8)
        status, detail = learned.check_depth_pairing(DepthCodeModel.from_weights(code8),
                                                      code8, step)
        assert status == "mismatch"
        assert (f"learned step {str(step)!r} was trained with another depth network than "
                f"{str(code8)!r} (code_dim 32 there, 8 here;") in detail
        assert "it was trained with 'models/depth_code.pt'" in detail
        assert detail in caplog.text
        other32 = _depth_weights(tmp_path / "other32.pt", 32)
        status, detail = learned.check_depth_pairing(DepthCodeModel.from_weights(other32),
                                                      other32, step)
        assert status == "mismatch" and "other weights of the same code_dim 32" in detail


def test_benchmark_records_and_warns_of_a_depth_network_the_step_was_not_trained_with(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`benchmark-slam --depth-weights` with a code_dim 8 network and a step trained with the
    shipped one reported its figures without a warning."""
    from meetup_ros.slam.depth_code import DepthCodeModel

    _fast_benchmark(monkeypatch)
    step = LearnedStep.from_weights(MODELS / "slam_optimizer.pt")
    _, meta = load_weights(MODELS / "slam_optimizer.pt", kind="slam_optimizer")
    shipped_depth = DepthCodeModel.from_weights(MODELS / "depth_code.pt")
    recorded = tmp_path / "opt.pt"
    save_weights(recorded, step.state_dict(), **{
        **meta, "depth_code_dim": 32,
        "depth_weights_sha256": learned.depth_network_digest(shipped_depth)})
    code8 = _depth_weights(tmp_path / "code8.pt", 8)
    with caplog.at_level(logging.WARNING):
        report = benchmark.run_benchmark(BAG, shared_data, tmp_path / "a", code8, recorded)
    assert report["weights_pairing"]["status"] == "mismatch"
    assert "code_dim 32 there, 8 here" in report["weights_pairing"]["detail"]
    assert "was trained with another depth network than" in caplog.text
    summary = json.loads((tmp_path / "a" / "slam_report.json").read_text())
    assert summary["weights"]["pairing"] == "mismatch"
