"""Retraining from the bundled bag: warm starts (--init), short-bag sampling, and running the
nodes on retrained weights (--models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from meetup_ros.cli import CommandError, main
from meetup_ros.cli.run import WEIGHT_PARAMS, params_with_models
from meetup_ros.ros.params import load_params_file

BAG = Path(__file__).resolve().parent.parent / "data" / "euroc_v1_01_easy_sample"
PARAMS = Path(__file__).resolve().parent.parent / "config" / "pipeline.yaml"
SMALL_VIO = ["--set", "imu_hidden=8", "--set", "image_channels=4", "--set", "steps_per_epoch=2",
             "--set", "heldout_s=1.0", "--set", "val_s=0.5", "--set", "chunk=20"]


def test_params_with_models_points_weight_parameters_into_the_folder(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(PARAMS.parent.parent / "models" / "governor.onnx", models / "governor.onnx")
    out = params_with_models(PARAMS, models, tmp_path / "params.yaml")
    written = load_params_file(out)  # sections by node name (the file keys /**/<node>)
    original = load_params_file(PARAMS)
    for node in ("controller_node", "safety_monitor_node"):
        assert written[node]["network_path"] == str((models / "governor.onnx").resolve())
    # files not in the folder keep the shipped ones; nothing else changes
    assert written["vio_node"] == original["vio_node"]
    assert written["slam_node"] == original["slam_node"]
    assert set(WEIGHT_PARAMS) <= set(written)


def test_params_with_models_rejects_a_missing_or_unrelated_folder(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is not a folder"):
        params_with_models(PARAMS, tmp_path / "nope", tmp_path / "p.yaml")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no weights here")
    with pytest.raises(CommandError, match="holds none of the weight files"):
        params_with_models(PARAMS, tmp_path / "empty", tmp_path / "p.yaml")
    assert not (tmp_path / "p.yaml").exists()


def test_train_vio_init_starts_from_the_given_weights(tmp_path: Path) -> None:
    """A warm start loads the file (its shape wins over --set) and records where it began."""
    torch.set_num_threads(1)
    first = tmp_path / "first"
    assert main(["train", "vio", "--bag", str(BAG), "--out", str(first), "--epochs", "1",
                 *SMALL_VIO, "--set", "core_hidden=8"]) == 0
    from meetup_ros.odometry.estimator import VioEstimator

    start = VioEstimator.from_weights(first / "vio.pt").model.state_dict()
    second = tmp_path / "second"
    # --epochs 1 with a tiny eta: the fine-tuned weights stay next to the start
    assert main(["train", "vio", "--bag", str(BAG), "--out", str(second), "--epochs", "1",
                 "--lr", "1e-7", "--init", str(first / "vio.pt"), *SMALL_VIO,
                 "--set", "core_hidden=32"]) == 0
    tuned = VioEstimator.from_weights(second / "vio.pt")
    assert tuned.metadata["init_weights"] == str(first / "vio.pt")
    assert tuned.model.config.core_hidden == 8
    for name, value in tuned.model.state_dict().items():
        assert torch.allclose(value, start[name], atol=1e-4), name
    scratch = VioEstimator.from_weights(first / "vio.pt").metadata
    assert scratch["init_weights"] is None


@pytest.mark.parametrize("network,weights,match", [
    ("vio", "depth_code.pt", "expected 'vio_multirate_lstm'"),
    ("optimizer", "vio.pt", "expected 'slam_optimizer'"),
    ("controller", "governor.onnx", "trains from scratch"),
    ("vio", "missing.pt", "does not exist"),
])
def test_train_init_with_the_wrong_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], network: str, weights: str, match: str
) -> None:
    code = main(["train", network, "--bag", str(BAG), "--out", str(tmp_path), "--epochs", "1",
                 "--init", weights])
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_chunk_sampler_stays_inside_a_bag_that_is_all_image_window() -> None:
    """The bundled bag is all at rest with images: every chunk must fit the training set."""
    from meetup_ros.odometry.model import VioNetConfig
    from meetup_ros.odometry.training import ChunkSampler, VioTrainOptions, load_vio_data

    options = VioTrainOptions(heldout_s=1.0, val_s=0.5, chunk=60, rest_fraction=1.0)
    cfg = VioNetConfig()
    data = load_vio_data((BAG,), options, (cfg.image_height, cfg.image_width))
    assert data.rest_range[1] - data.rest_range[0] == len(data.train)
    sampler = ChunkSampler(data, options, batch_size=16, seed=0)
    for _ in range(50):
        batch = sampler()
        assert batch["xi"].shape[:2] == (16, 60)
        assert np.isfinite(batch["imu"].numpy()).all()


def test_demo_report_names_the_models_folder(tmp_path: Path) -> None:
    """``--models`` reaches the report's offline scores: a folder with an unreadable depth
    network fails those figures by name instead of silently using the shipped one."""
    from meetup_ros.cli.run import _slam_weights

    models = tmp_path / "models"
    models.mkdir()
    (models / "depth_code.pt").write_bytes(b"not a weights file")
    params = params_with_models(PARAMS, models, tmp_path / "params.yaml")
    weights = _slam_weights(params)
    assert weights["depth_weights"] == str((models / "depth_code.pt").resolve())
    assert weights["optimizer_weights"] == "slam_optimizer.pt"
    assert json.loads(json.dumps(weights)) == weights


@pytest.mark.parametrize("setting", ["hidden=0", "unroll=0", "steps=two", "mono_pairs=-1",
                                     "pyramid=2", "mono_share=1.5", "mono_share=x"])
def test_train_optimizer_rejects_bad_settings_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str
) -> None:
    code = main(["train", "optimizer", "--bag", str(BAG), "--out", str(tmp_path),
                 "--epochs", "1", "--set", setting])
    assert code == 2
    assert f"--set {setting.split('=')[0]}=" in capsys.readouterr().err
    assert not (tmp_path / "metrics.csv").exists()


def _copied_bag(dst: Path, twice: tuple[str, ...] = (), edit: object = None) -> Path:
    """The bundled bag written again: messages on ``twice`` written a second time with the
    same stamp (``edit(topic, msg)`` may change that copy), messages for which ``edit``
    returns True written changed."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from meetup_ros.bags.importer import TYPESTORE

    with Reader(BAG) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as out:
        conns = {c.id: out.add_connection(c.topic, c.msgtype, typestore=TYPESTORE)
                 for c in reader.connections}
        for conn, t_ns, raw in reader.messages():
            copy = raw
            if edit is not None:
                msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                if edit(conn.topic, msg):  # type: ignore[operator]
                    copy = TYPESTORE.serialize_cdr(msg, conn.msgtype)
            if conn.topic in twice:
                out.write(conns[conn.id], t_ns, raw)
            out.write(conns[conn.id], t_ns, copy)
    return dst


def test_duplicated_camera_frames_are_dropped_not_made_intervals(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bag with each image written twice (same stamp) gave 169 VIO training intervals
    instead of 84, and another loss, without a word: each repeat became an interval of
    length 0. Repeats are dropped with a warning naming the topic and count; two different
    images at one stamp are refused."""
    from meetup_ros.odometry.model import VioNetConfig
    from meetup_ros.odometry.training import VioTrainOptions, load_vio_data
    from meetup_ros.odometry.windowing import OdometryError

    options = VioTrainOptions(heldout_s=1.0, val_s=0.5, chunk=20)
    config = VioNetConfig()
    hw = (config.image_height, config.image_width)
    plain = load_vio_data((BAG,), options, hw)
    doubled = _copied_bag(tmp_path / "doubled", twice=("/cam0/image_raw", "/cam1/image_raw"))
    with caplog.at_level("WARNING"):
        data = load_vio_data((doubled,), options, hw)
    assert len(data.train) == len(plain.train)
    assert np.array_equal(data.train.frame_stamps_ns, plain.train.frame_stamps_ns)
    assert np.array_equal(data.train.pair, plain.train.pair)
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(BAG)
    for topic, cam in (("/cam0/image_raw", seq.cam0), ("/cam1/image_raw", seq.cam1)):
        assert cam is not None
        warned = [r.getMessage() for r in caplog.records if topic in r.getMessage()]
        assert len(warned) == 1, warned
        assert f": {len(cam.stamps_ns)} image(s) on {topic} repeat the stamp and picture" in (
            warned[0]), warned

    def brighter(topic: str, msg: object) -> bool:
        if topic != "/cam0/image_raw":
            return False
        msg.data = msg.data.copy()  # type: ignore[attr-defined]
        msg.data[0] = (int(msg.data[0]) + 1) % 256  # type: ignore[attr-defined]
        return True

    differing = _copied_bag(tmp_path / "differing", twice=("/cam0/image_raw",), edit=brighter)
    with pytest.raises(OdometryError, match=r"'/cam0/image_raw' has two different images at "
                                            r"stamp \d+ ns"):
        load_vio_data((differing,), options, hw)


def test_a_nan_groundtruth_pose_is_one_line_naming_its_stamp(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN ground-truth position stopped `train vio` at "the loss is nan ... the loss or its
    data" (exit 2), without saying which sample; now the pose's stamp is named, before any
    training."""
    seen = {"n": 0, "stamp": 0}

    def nan_position(topic: str, msg: object) -> bool:
        if topic != "/groundtruth/odometry":
            return False
        seen["n"] += 1
        if seen["n"] != 50:
            return False
        msg.pose.pose.position.x = float("nan")  # type: ignore[attr-defined]
        stamp = msg.header.stamp  # type: ignore[attr-defined]
        seen["stamp"] = stamp.sec * 1_000_000_000 + stamp.nanosec
        return True

    bag = _copied_bag(tmp_path / "gt_nan", edit=nan_position)
    out = tmp_path / "out"
    assert main(["train", "vio", "--bag", str(bag), "--out", str(out), "--epochs", "1",
                 *SMALL_VIO]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (f"ground truth '/groundtruth/odometry' at stamp {seen['stamp']} ns (pose 50 of"
            in err and "non-finite position" in err), err
    assert not (out / "checkpoint.pt").exists()
