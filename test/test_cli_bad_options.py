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



def bag_without(dst: Path, dropped: tuple[str, ...], empty: tuple[str, ...] = ()) -> Path:
    """The bundled bag written with rosbags without the ``dropped`` topics, and with the
    ``empty`` ones declared but holding no message."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from meetup_ros.bags.importer import TYPESTORE

    with Reader(BAG) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as out:
        conns = {c.id: out.add_connection(c.topic, c.msgtype, typestore=TYPESTORE)
                 for c in reader.connections if c.topic not in dropped}
        for conn, t_ns, raw in reader.messages():
            if conn.id in conns and conn.topic not in empty:
                out.write(conns[conn.id], t_ns, raw)
    return dst


@pytest.mark.parametrize(("dropped", "empty", "named"), [
    (("/imu0",), (), "lacks ['/imu0']"),
    (("/cam0/camera_info", "/cam1/camera_info"), (),
     "lacks ['/cam0/camera_info', '/cam1/camera_info']"),
    ((), ("/groundtruth/odometry",), "has no message on ['/groundtruth/odometry']"),
], ids=["no imu", "no camera_info", "empty ground truth"])
def test_demo_names_the_topics_its_bag_lacks_before_any_node_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], dropped: tuple[str, ...],
        empty: tuple[str, ...], named: str) -> None:
    """Without /imu0 or camera_info the demo started the nodes, replayed, then failed
    "node failure: scoring: ..." though no node had failed."""
    bag = bag_without(tmp_path / "bag", dropped, empty)
    out_dir = tmp_path / "demo"
    assert main(["demo", "--bag", str(bag), "--out", str(out_dir), "--short"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"meetup-ros demo: error: bag {str(bag)!r} {named}, which the demo "
                          "needs (it needs ['/imu0', ")
    assert len(err.strip().splitlines()) == 1
    assert not out_dir.exists()  # no node started (their logs go there)


def test_evaluate_visual_has_no_weights_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`--weights` was read and then ignored (`del weights`): a text file or a corrupt vio.pt
    gave exit 0 and the same figures, under a help text saying "VIO weights"."""
    import inspect

    from meetup_ros.cli import build_parser
    from meetup_ros.odometry.visual_baseline import evaluate_visual

    with pytest.raises(SystemExit) as stop:
        main(["evaluate-visual", "--weights", "notes.txt", "--out", "unused"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --weights notes.txt" in capsys.readouterr().err
    assert "weights" not in inspect.signature(evaluate_visual).parameters
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate-visual", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "FlowScaleNet" in text and "no weights file is read" in text
    assert "--weights" not in text


@pytest.mark.parametrize(("types", "message"), [
    (["imu"], "--type 'imu': expected TOPIC=pkg/msg/Name, e.g. /imu0=sensor_msgs/msg/Imu"),
    (["/imu0=Imu"], "--type '/imu0=Imu': expected TOPIC=pkg/msg/Name"),
    (["/odom=nav_msgs/msg/Odometry"],
     "--type '/odom=nav_msgs/msg/Odometry': '/odom' is not among --topics ['/imu0']"),
])
def test_record_refuses_a_bad_type_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          types: list[str], message: str) -> None:
    argv = ["record", str(tmp_path / "rec"), "--topics", "/imu0"]
    for item in types:
        argv += ["--type", item]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"meetup-ros record: error: {message}")
    assert not (tmp_path / "rec").exists()


def test_the_default_data_root_works_from_any_directory(tmp_path, monkeypatch) -> None:
    """`benchmark-slam` run from another directory said "'../shared/data' is not a folder":
    the default is looked up from the source tree when it is not there from the cwd; a path
    given that exists is used as is."""
    from meetup_ros import paths

    if not (paths.SOURCE_ROOT / paths.SHARED_DATA).is_dir():
        pytest.skip("no ../shared/data beside this checkout")
    monkeypatch.chdir(tmp_path)
    assert paths.shared_data_path(paths.SHARED_DATA).resolve() == (
        paths.SOURCE_ROOT / paths.SHARED_DATA).resolve()
    (tmp_path / "mine").mkdir()
    assert paths.shared_data_path("mine") == Path("mine")


@pytest.mark.parametrize("command", [["evaluate-vio"], ["benchmark-slam"],
                                     ["study", "optimizers"]])
def test_an_out_that_is_a_dangling_link_is_refused_before_any_work(
        tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """exists() follows the link: a dangling --out passed the check, and the first write
    failed with a FileExistsError traceback after the whole run (a second tester's)."""
    from meetup_ros.cli import main

    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    assert main([*command, "--out", str(link)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(link)!r}: a symbolic link to" in err and "does not exist" in err


@pytest.mark.parametrize("command", [["demo", "--short"], ["benchmark", "instances.csv"]])
@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_an_out_that_is_or_lies_under_a_file_is_refused_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str], where: str) -> None:
    """`demo --out <file>` was a FileExistsError traceback, and `benchmark --out <file>/sub`
    a NotADirectoryError one after every instance had run (a tester's)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    (tmp_path / "instances.csv").write_text("net.onnx,prop.vnnlib,5\n")
    out = tmp_path / where
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(out)!r}: " in err and "not a folder" in err, err
    assert (tmp_path / "file").read_text() == ""  # untouched


@pytest.mark.parametrize("content", [b"caf\xe9,x,1\n", b"\xc0\x80\xff\xfe" * 40])
def test_benchmark_names_an_instances_file_that_is_not_utf8(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    """A latin-1 or binary instances CSV was a UnicodeDecodeError traceback (a tester's)."""
    csv_path = tmp_path / "instances.csv"
    csv_path.write_bytes(content)
    assert main(["benchmark", str(csv_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"instances file {str(csv_path)!r} is not UTF-8 text (byte" in err, err


def test_an_instances_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM, which stayed in the first network's name:
    "network file '\\ufeffACASXU_...onnx' does not exist" (a tester's)."""
    from meetup_ros.verification.benchmark import read_instances

    csv_path = tmp_path / "instances.csv"
    csv_path.write_bytes("\ufeffnet.onnx,prop.vnnlib,5\n".encode())
    (instance,) = read_instances(csv_path)
    assert instance.onnx == tmp_path / "net.onnx"
