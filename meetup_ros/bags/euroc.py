"""Read an EuRoC ASL folder (``mav0/`` with cam0, cam1, imu0; ground truth) into numpy.

Layout (Burri et al., IJRR 2016): ``mav0/<sensor>/data.csv`` with a ``#timestamp [ns],...``
header, ``mav0/<sensor>/sensor.yaml`` (OpenCV-style, first line ``%YAML:1.0``), camera frames in
``mav0/camN/data/<stamp>.png``. Ground truth comes from
``mav0/state_groundtruth_estimate0/data.csv`` when present, else from the single EuRoC
state-format csv in ``groundtruth/`` (the micro copy keeps the recomputed one there).
Images are listed, not decoded; ``load_image`` decodes one on demand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from meetup_ros.bags.errors import EurocError

logger = logging.getLogger(__name__)

_GT_COLUMNS = 17  # stamp, p(3), q wxyz(4), v(3), bias gyro(3), bias accel(3)
_IMU_COLUMNS = 7  # stamp, gyro(3), accel(3)


@dataclass(frozen=True)
class CameraCalibration:
    """Pinhole + radtan camera from ``sensor.yaml``; K in pixels, T_body_cam maps cam->body."""

    name: str
    K: np.ndarray  # (3, 3)
    dist: np.ndarray  # (4,) k1 k2 p1 p2 (radtan = ROS plumb_bob)
    width: int
    height: int
    T_body_cam: np.ndarray  # (4, 4)
    rate_hz: float


@dataclass(frozen=True)
class CameraStream:
    """One camera: its calibration and the frames that exist on disk."""

    calib: CameraCalibration
    stamps_ns: np.ndarray  # (N,) int64, increasing
    paths: list[Path]


@dataclass(frozen=True)
class ImuCalibration:
    """IMU noise model from ``sensor.yaml``; densities per sqrt(Hz)."""

    gyro_noise_density: float  # rad/s/sqrt(Hz)
    gyro_random_walk: float  # rad/s^2/sqrt(Hz)
    accel_noise_density: float  # m/s^2/sqrt(Hz)
    accel_random_walk: float  # m/s^3/sqrt(Hz)
    rate_hz: float
    T_body_imu: np.ndarray  # (4, 4)

    @property
    def gyro_var_radps2(self) -> float:
        """Discrete-time gyro variance per axis: nd^2 * rate."""
        return self.gyro_noise_density**2 * self.rate_hz

    @property
    def accel_var_mps2_2(self) -> float:
        """Discrete-time accelerometer variance per axis: nd^2 * rate."""
        return self.accel_noise_density**2 * self.rate_hz


@dataclass(frozen=True)
class ImuData:
    stamps_ns: np.ndarray  # (M,) int64
    gyro_radps: np.ndarray  # (M, 3)
    accel_mps2: np.ndarray  # (M, 3)


@dataclass(frozen=True)
class GroundTruth:
    """Body (= IMU) pose in the world frame; velocity in world; biases in the IMU frame."""

    stamps_ns: np.ndarray  # (G,) int64
    p_world_body: np.ndarray  # (G, 3) m
    q_world_body_xyzw: np.ndarray  # (G, 4)
    v_world_mps: np.ndarray | None  # (G, 3)
    bias_gyro_radps: np.ndarray | None  # (G, 3)
    bias_accel_mps2: np.ndarray | None  # (G, 3)
    source: str = ""


@dataclass(frozen=True)
class EurocSequence:
    root: Path
    cam0: CameraStream
    cam1: CameraStream | None
    imu: ImuData
    imu_calib: ImuCalibration
    groundtruth: GroundTruth | None
    skipped: dict[str, int] = field(default_factory=dict)


def _mav0(asl_dir: Path) -> Path:
    if not asl_dir.exists():
        raise EurocError(f"EuRoC folder {str(asl_dir)!r} does not exist")
    if not asl_dir.is_dir():
        raise EurocError(f"EuRoC folder {str(asl_dir)!r} is not a directory")
    mav0 = asl_dir / "mav0"
    if not mav0.is_dir():
        if (asl_dir / "cam0").is_dir():
            return asl_dir  # the caller passed mav0/ itself
        raise EurocError(
            f"EuRoC folder {str(asl_dir)!r} has no 'mav0/' subfolder; expected the ASL layout "
            "mav0/{cam0,cam1,imu0}"
        )
    return mav0


def read_sensor_yaml(path: Path) -> dict[str, Any]:
    """Read an EuRoC ``sensor.yaml``; skips the ``%YAML:1.0`` directive PyYAML rejects."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EurocError(f"missing sensor file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EurocError(f"cannot read sensor file {str(path)!r}: {exc}") from None
    lines = text.splitlines()
    if lines and lines[0].startswith("%YAML:"):
        lines = lines[1:]
    try:
        data = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError as exc:
        raise EurocError(f"malformed YAML in {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise EurocError(f"{str(path)!r} holds {type(data).__name__}, expected a YAML mapping")
    return data


def _get(data: dict[str, Any], key: str, path: Path) -> Any:
    if key not in data:
        raise EurocError(f"{str(path)!r} has no key {key!r}")
    return data[key]


def _floats(value: Any, n: int, key: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EurocError(f"{str(path)!r}: {key} = {value!r}, expected {n} numbers") from None
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise EurocError(f"{str(path)!r}: {key} = {value!r}, expected {n} finite numbers")
    return arr


def _transform(data: dict[str, Any], path: Path) -> np.ndarray:
    t_bs = _get(data, "T_BS", path)
    if not isinstance(t_bs, dict) or "data" not in t_bs:
        raise EurocError(f"{str(path)!r}: T_BS = {t_bs!r}, expected {{rows, cols, data}}")
    T = _floats(t_bs["data"], 16, "T_BS.data", path).reshape(4, 4)
    if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(
        T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4
    ):
        raise EurocError(f"{str(path)!r}: T_BS is not a rigid transform: {T.tolist()!r}")
    return T


def read_camera_calibration(path: Path, name: str) -> CameraCalibration:
    """Parse a camera ``sensor.yaml`` (pinhole, radial-tangential)."""
    data = read_sensor_yaml(path)
    model = _get(data, "camera_model", path)
    if model != "pinhole":
        raise EurocError(f"{str(path)!r}: camera_model = {model!r}, expected 'pinhole'")
    dist_model = _get(data, "distortion_model", path)
    if dist_model not in ("radial-tangential", "radtan"):
        raise EurocError(
            f"{str(path)!r}: distortion_model = {dist_model!r}, expected 'radial-tangential'"
        )
    fu, fv, cu, cv = _floats(_get(data, "intrinsics", path), 4, "intrinsics", path)
    dist = _floats(_get(data, "distortion_coefficients", path), 4, "distortion_coefficients", path)
    resolution = _floats(_get(data, "resolution", path), 2, "resolution", path)
    width, height = int(resolution[0]), int(resolution[1])
    if width <= 0 or height <= 0:
        raise EurocError(f"{str(path)!r}: resolution = {[width, height]!r}, expected > 0")
    K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
    rate_hz = float(data.get("rate_hz", 20.0))
    return CameraCalibration(name, K, dist, width, height, _transform(data, path), rate_hz)


def read_imu_calibration(path: Path) -> ImuCalibration:
    """Parse the IMU ``sensor.yaml`` (noise densities, random walks, rate, T_BS)."""
    data = read_sensor_yaml(path)
    values = {}
    for key in (
        "gyroscope_noise_density",
        "gyroscope_random_walk",
        "accelerometer_noise_density",
        "accelerometer_random_walk",
        "rate_hz",
    ):
        value = _floats(_get(data, key, path), 1, key, path)[0]
        if value <= 0:
            raise EurocError(f"{str(path)!r}: {key} = {value!r}, expected > 0")
        values[key] = float(value)
    return ImuCalibration(
        gyro_noise_density=values["gyroscope_noise_density"],
        gyro_random_walk=values["gyroscope_random_walk"],
        accel_noise_density=values["accelerometer_noise_density"],
        accel_random_walk=values["accelerometer_random_walk"],
        rate_hz=values["rate_hz"],
        T_body_imu=_transform(data, path),
    )


def _read_csv_rows(path: Path, n_columns: int, what: str) -> list[tuple[int, list[str]]]:
    """Return (line number, fields) of the data rows; comments and blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EurocError(f"missing {what} file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EurocError(f"cannot read {what} file {str(path)!r}: {exc}") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != n_columns:
            raise EurocError(
                f"{path!s}:{line_no}: {line!r} has {len(fields)} fields, "
                f"expected {n_columns} ({what})"
            )
        rows.append((line_no, fields))
    if not rows:
        raise EurocError(f"{what} file {str(path)!r} has no data rows")
    return rows


def _stamp(value: str, path: Path, line_no: int) -> int:
    try:
        stamp_ns = int(value)
    except ValueError:
        raise EurocError(
            f"{path!s}:{line_no}: timestamp {value!r} is not an integer nanosecond stamp"
        ) from None
    if stamp_ns < 0:
        raise EurocError(f"{path!s}:{line_no}: timestamp {value!r} is negative")
    return stamp_ns


def _numeric_table(path: Path, n_columns: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a stamp + floats csv into (stamps_ns (R,), values (R, n_columns - 1))."""
    rows = _read_csv_rows(path, n_columns, what)
    stamps = np.empty(len(rows), dtype=np.int64)
    values = np.empty((len(rows), n_columns - 1), dtype=np.float64)
    for i, (line_no, fields) in enumerate(rows):
        stamps[i] = _stamp(fields[0], path, line_no)
        try:
            values[i] = [float(f) for f in fields[1:]]
        except ValueError:
            raise EurocError(
                f"{path!s}:{line_no}: {','.join(fields)!r} has a non-numeric value ({what})"
            ) from None
        if not np.all(np.isfinite(values[i])):
            raise EurocError(
                f"{path!s}:{line_no}: {','.join(fields)!r} has a NaN or infinite value "
                f"({what})"
            )
        if i and stamps[i] <= stamps[i - 1]:
            raise EurocError(
                f"{path!s}:{line_no}: timestamp {stamps[i]} is not after the previous "
                f"row's {stamps[i - 1]}; expected strictly increasing stamps"
            )
    return stamps, values


def read_camera(cam_dir: Path, name: str, *, strict: bool = False) -> tuple[CameraStream, int]:
    """Read ``camN/data.csv`` + ``sensor.yaml``; returns the stream and the rows skipped.

    A row whose PNG is missing raises with ``strict``; otherwise it is skipped with a warning
    (the micro copy's cam1/data.csv lists 4 frames past the end that were not copied).
    """
    if not cam_dir.is_dir():
        raise EurocError(f"missing camera folder {str(cam_dir)!r}")
    calib = read_camera_calibration(cam_dir / "sensor.yaml", name)
    csv_path = cam_dir / "data.csv"
    rows = _read_csv_rows(csv_path, 2, "camera csv")
    stamps: list[int] = []
    paths: list[Path] = []
    missing: list[str] = []
    for line_no, (stamp_text, filename) in rows:
        stamp_ns = _stamp(stamp_text, csv_path, line_no)
        if stamps and stamp_ns <= stamps[-1]:
            raise EurocError(
                f"{csv_path!s}:{line_no}: timestamp {stamp_ns} is not after {stamps[-1]}; "
                "expected strictly increasing stamps"
            )
        image_path = cam_dir / "data" / filename
        if not image_path.is_file():
            if strict:
                raise EurocError(
                    f"{csv_path!s}:{line_no}: image {str(image_path)!r} does not exist"
                )
            missing.append(filename)
            continue
        stamps.append(stamp_ns)
        paths.append(image_path)
    if missing:
        logger.warning(
            "%s lists %d image(s) missing from %s (first %r); skipped them",
            csv_path, len(missing), cam_dir / "data", missing[0],
        )
    if not stamps:
        raise EurocError(f"{str(csv_path)!r}: none of its {len(rows)} images exist")
    return CameraStream(calib, np.asarray(stamps, dtype=np.int64), paths), len(missing)


def load_image(path: Path, calib: CameraCalibration | None = None) -> np.ndarray:
    """Decode one 8-bit grayscale PNG to uint8 (H, W); checks its size against ``calib``.

    Raises:
        EurocError: the file is missing, truncated, not 8-bit single channel, or of another size.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EurocError(f"cannot read image {str(path)!r}: {exc}") from None
    # OpenCV only returns None for a cut PNG (libpng's reason goes to stderr); checking for
    # the closing IEND chunk first lets the error say "truncated".
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise EurocError(f"image {str(path)!r} is not a PNG (starts with {raw[:8]!r})")
    if b"IEND" not in raw[-16:]:
        raise EurocError(f"image {str(path)!r} is truncated: no IEND chunk at its end")
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise EurocError(f"image {str(path)!r} could not be decoded as PNG")
    if image.dtype != np.uint8 or image.ndim != 2:
        raise EurocError(
            f"image {str(path)!r} is {image.dtype} with shape {image.shape!r}, "
            "expected 8-bit grayscale (mono8)"
        )
    if calib is not None and image.shape != (calib.height, calib.width):
        raise EurocError(
            f"image {str(path)!r} is {image.shape[1]}x{image.shape[0]}, expected "
            f"{calib.width}x{calib.height} from {calib.name}/sensor.yaml"
        )
    return image


def read_imu(imu_dir: Path) -> tuple[ImuData, ImuCalibration]:
    """Read ``imu0/data.csv`` (stamp, gyro rad/s, accel m/s^2) and its ``sensor.yaml``."""
    if not imu_dir.is_dir():
        raise EurocError(f"missing IMU folder {str(imu_dir)!r}")
    calib = read_imu_calibration(imu_dir / "sensor.yaml")
    stamps, values = _numeric_table(imu_dir / "data.csv", _IMU_COLUMNS, "IMU csv")
    return ImuData(stamps, values[:, :3].copy(), values[:, 3:6].copy()), calib


def read_groundtruth_csv(path: Path) -> GroundTruth:
    """Read an EuRoC state csv: stamp, p xyz, q wxyz, v xyz (world), bias gyro, bias accel."""
    stamps, values = _numeric_table(path, _GT_COLUMNS, "ground-truth csv")
    q_wxyz = values[:, 3:7]
    norms = np.linalg.norm(q_wxyz, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-2)
    if bad.size:
        raise EurocError(
            f"{path!s}: row {int(bad[0]) + 1} quaternion {q_wxyz[bad[0]].tolist()!r} has "
            f"norm {norms[bad[0]]:.4f}, expected 1"
        )
    q_xyzw = (q_wxyz / norms[:, None])[:, [1, 2, 3, 0]]
    return GroundTruth(
        stamps_ns=stamps,
        p_world_body=values[:, 0:3].copy(),
        q_world_body_xyzw=q_xyzw,
        v_world_mps=values[:, 7:10].copy(),
        bias_gyro_radps=values[:, 10:13].copy(),
        bias_accel_mps2=values[:, 13:16].copy(),
        source=str(path),
    )


def find_groundtruth(asl_dir: Path) -> Path | None:
    """The ground-truth csv: mav0's state estimate if present, else the one csv in groundtruth/."""
    mav0 = _mav0(asl_dir)
    state = mav0 / "state_groundtruth_estimate0" / "data.csv"
    if state.is_file():
        return state
    for folder in (asl_dir / "groundtruth", mav0.parent / "groundtruth"):
        if folder.is_dir():
            csvs = sorted(folder.glob("*.csv"))
            if len(csvs) == 1:
                return csvs[0]
            if len(csvs) > 1:
                raise EurocError(
                    f"ground-truth folder {str(folder)!r} holds {len(csvs)} csv files "
                    f"{[c.name for c in csvs]!r}, expected one"
                )
    return None


def load_euroc(asl_dir: str | Path, *, strict: bool = False) -> EurocSequence:
    """Read the whole ASL folder (images listed, not decoded).

    Args:
        asl_dir: the folder holding ``mav0/`` (or ``mav0`` itself).
        strict: raise on csv rows whose PNG is missing instead of skipping them.

    Raises:
        EurocError: naming the file (and line) that is missing or malformed.
    """
    root = Path(asl_dir)
    mav0 = _mav0(root)
    cam0, skipped0 = read_camera(mav0 / "cam0", "cam0", strict=strict)
    cam1: CameraStream | None = None
    skipped = {"cam0": skipped0}
    if (mav0 / "cam1").exists():
        cam1, skipped["cam1"] = read_camera(mav0 / "cam1", "cam1", strict=strict)
    imu, imu_calib = read_imu(mav0 / "imu0")
    gt_path = find_groundtruth(root)
    groundtruth = read_groundtruth_csv(gt_path) if gt_path is not None else None
    if groundtruth is None:
        logger.warning("no ground truth found under %s", root)
    logger.info(
        "EuRoC %s: cam0 %d frames, cam1 %s frames, imu %d samples, ground truth %s",
        root, cam0.stamps_ns.size, cam1.stamps_ns.size if cam1 else 0, imu.stamps_ns.size,
        gt_path,
    )
    return EurocSequence(root, cam0, cam1, imu, imu_calib, groundtruth, skipped)
