"""Strict readers of the public KITTI odometry and TUM RGB-D snippets under the data root.

``evaluate-visual`` (``odometry.visual_baseline``) and ``benchmark-slam`` (``slam.data``) read
the same files. Both go through here, so that a malformed or missing file fails the same way
in both: a :class:`DatasetError` naming the file, the line where one applies, the value and
what was expected. Before, a bad file was a numpy traceback, and TUM frames outside the
ground truth took a pose from seconds away without a word. ROS-free; numpy only.

Files (the shared data's layout):

- KITTI ``poses.txt``: one line per frame, 12 numbers, the 3x4 ``T_world_cam0`` row by row
  (the world is the first camera frame: x right, y down, z forward).
- KITTI ``calib.txt``: ``P0: <12 numbers>`` lines, or (this snippet) the same lines without
  labels in KITTI's order P0, P1, ...; only P0 (the 3x4 projection of the left camera) is used.
- KITTI ``image_l/*.png``: one image per pose, in name order.
- TUM ``groundtruth.txt``: ``timestamp tx ty tz qx qy qz qw`` lines, ``#`` comments.
- TUM frames ``assets/freiburg_sequence/<timestamp>.png``.

The frames of one sequence are all of one size: its intrinsics are for that size.
"""

from __future__ import annotations

import itertools
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KITTI06 = "kitti_odometry_06_frames000-050_mono/KITTI_sequence_1"
KITTI_TURN = "kitti_odometry_KITTIsequence2_frames51_mono/KITTI_sequence_2"
TUM_OFFICE = "tum_rgbd_fr3_long_office_household_17frames_1hz"
MONO_SEQUENCES = (KITTI06, KITTI_TURN, TUM_OFFICE)

# How far a TUM frame may lie from the nearest ground-truth pose. The shared data's first
# frame is 0.067 s before its ground truth starts (its PROVENANCE.md says so) and takes the
# first pose; at the camera's hand-held speed (~0.3 m/s) that is about 2 cm. A frame further
# out would be given a pose it never had (a tester's 5 s gap gave frames 0-4 one pose).
TUM_GT_TOLERANCE_S = 0.1
# KITTI writes 7 significant digits, so a true rotation is orthonormal to ~1e-6; a file
# rounded to 3 decimals (a tester's, refused at 1e-3) is off by up to ~2e-3. A row off by
# more than this is not a pose (a swapped or mistyped value).
_ROTATION_TOLERANCE = 1e-2


class DatasetError(ValueError):
    """A KITTI/TUM file or folder is missing or malformed; the message names it."""


def _read_text(path: Path, what: str, expected: str) -> str:
    if not path.is_file():
        raise DatasetError(f"{what} {str(path)!r} does not exist; expected {expected}")
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark is not data
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} {str(path)!r} cannot be read as text: {exc}") from None


def _numbers(path: Path, line_no: int, fields: list[str], count: int, what: str
             ) -> list[float]:
    """``count`` finite floats from ``fields``, else a DatasetError naming path:line."""
    if len(fields) != count:
        raise DatasetError(f"{path}:{line_no}: {' '.join(fields)!r} has {len(fields)} values; "
                           f"expected {count} ({what})")
    values = []
    for field in fields:
        try:
            value = float(field)
        except ValueError:
            raise DatasetError(f"{path}:{line_no}: {field!r} is not a number; expected {count} "
                               f"numbers ({what})") from None
        if not np.isfinite(value):
            raise DatasetError(f"{path}:{line_no}: {field!r} is not finite; expected {count} "
                               f"finite numbers ({what})")
        values.append(value)
    return values


def read_gray_image(path: Path) -> np.ndarray:
    """A frame of these sequences as uint8 grey (TUM's RGB frames converted by OpenCV).

    Raises:
        DatasetError: the file is missing or not an image OpenCV reads.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"image {str(path)!r} cannot be read as an image")
    return image


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file: from a PNG's IHDR header (these sequences' frames
    are PNGs, and a sequence's sizes are read before its frames), else by decoding it.

    Raises:
        DatasetError: the file cannot be opened, or is not a PNG and not an image OpenCV reads.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise DatasetError(f"image {str(path)!r} cannot be read: {exc}") from None
    # signature (8 bytes), then the IHDR chunk: length (4), b"IHDR", width and height (>I)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    image = read_gray_image(path)
    return image.shape[1], image.shape[0]


def check_frame_sizes(paths: list[Path], what: str) -> tuple[int, int]:
    """The one (width, height) of a sequence's frames, the most common one (the first frame's
    on a tie). A frame of another size used to be read with the sequence's intrinsics, which
    are for one size (a tester's half-size KITTI frame changed benchmark-slam's figures
    without a word).

    Raises:
        DatasetError: a frame has another size; names the first such frame, its size and the
            sequence's.
    """
    sizes = [image_size(p) for p in paths]
    counts = Counter(sizes)
    common, n = counts.most_common(1)[0]  # ties: the first size seen
    for path, size in zip(paths, sizes, strict=True):
        if size != common:
            raise DatasetError(
                f"{what} frame {str(path)!r} is {size[0]}x{size[1]} pixels but {n} of the "
                f"sequence's {len(paths)} frames are {common[0]}x{common[1]}; expected every "
                "frame of a sequence at one size (its intrinsics are for one size)")
    return common


def mono_sequence_folders(data_root: Path) -> tuple[Path, Path, Path]:
    """The KITTI 06, KITTI turn and TUM folders under ``data_root``.

    Raises:
        DatasetError: any of them is missing (all missing ones are named). A partial data
            root used to drop those sequences from benchmark-slam's figures without a word.
    """
    root = Path(data_root)
    missing = [rel for rel in MONO_SEQUENCES if not (root / rel).is_dir()]
    if missing:
        raise DatasetError(f"data root {str(root)!r} lacks {', '.join(missing)}; expected the "
                           "KITTI and TUM snippets of the shared data (../shared/data)")
    kitti06, turn, tum = (root / rel for rel in MONO_SEQUENCES)
    return kitti06, turn, tum


def read_kitti_poses(path: Path) -> np.ndarray:
    """(N, 4, 4) ``T_world_cam0`` from a KITTI ``poses.txt``; N >= 1.

    Raises:
        DatasetError: the file is missing, empty, or a line (other than a ``#`` comment) is
            not 12 finite numbers whose 3x3 part is a rotation.
    """
    path = Path(path)
    what = "a 3x4 pose T_world_cam0, row by row"
    text = _read_text(path, "KITTI poses", f"{what} per line")
    poses = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):  # comments, as evo reads them
            continue
        T = np.eye(4)
        T[:3, :] = np.reshape(_numbers(path, line_no, line.split(), 12, what), (3, 4))
        R = T[:3, :3]
        off = float(np.max(np.abs(R.T @ R - np.eye(3))))
        if off > _ROTATION_TOLERANCE or np.linalg.det(R) <= 0:
            raise DatasetError(f"{path}:{line_no}: the 3x3 part is not a rotation (|R^T R - I| "
                               f"up to {off:.3g}, det {np.linalg.det(R):.3g}); expected a "
                               f"rotation to {_ROTATION_TOLERANCE:g}")
        poses.append(T)
    if not poses:
        raise DatasetError(f"KITTI poses {str(path)!r} has no poses; expected {what} per line")
    return np.stack(poses)


def read_kitti_calib_p0(path: Path) -> np.ndarray:
    """(3, 4) projection matrix P0 (the left camera) from a KITTI ``calib.txt``.

    Raises:
        DatasetError: the file is missing, has no P0, or P0 is not 12 finite numbers with
            positive focal lengths.
    """
    path = Path(path)
    expected = "a line 'P0: <12 numbers>' (or the 12 numbers alone on the first line)"
    text = _read_text(path, "KITTI calibration", expected)
    found: tuple[int, list[str]] | None = None
    first_unlabelled: tuple[int, list[str]] | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, colon, rest = line.partition(":")
        if colon and label.strip() == "P0":
            found = (line_no, rest.split())
            break
        if not colon and first_unlabelled is None:
            first_unlabelled = (line_no, line.split())
    # Without labels, the lines are in KITTI's order P0, P1, ...: the first one is P0
    found = found or first_unlabelled
    if found is None:
        raise DatasetError(f"KITTI calibration {str(path)!r} has no P0; expected {expected}")
    line_no, fields = found
    P0 = np.reshape(_numbers(path, line_no, fields, 12, "P0, the 3x4 projection"), (3, 4))
    if P0[0, 0] <= 0 or P0[1, 1] <= 0:
        raise DatasetError(f"{path}:{line_no}: P0's focal lengths are {P0[0, 0]:g} and "
                           f"{P0[1, 1]:g}; expected both > 0")
    return P0


@dataclass(frozen=True)
class KittiSnippet:
    """A KITTI odometry snippet: one left image per pose, P0's intrinsics."""

    folder: Path
    T_world_cam: np.ndarray  # (N, 4, 4), camera frame: x right, y down, z forward
    P0: np.ndarray  # (3, 4)
    K: np.ndarray  # (3, 3), P0's left 3x3
    image_paths: list[Path]  # N, in name order


def read_kitti(folder: Path) -> KittiSnippet:
    """``poses.txt``, ``calib.txt`` and ``image_l/*.png`` of a KITTI snippet (>= 2 frames).

    Raises:
        DatasetError: a file is missing or malformed, the image and pose counts differ,
            there is only one frame (both commands use consecutive pairs), or the frames are
            not all of one size (:func:`check_frame_sizes`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"KITTI folder {str(folder)!r} does not exist")
    poses = read_kitti_poses(folder / "poses.txt")
    P0 = read_kitti_calib_p0(folder / "calib.txt")
    images = sorted((folder / "image_l").glob("*.png"))
    if len(images) != len(poses):
        raise DatasetError(f"{str(folder)!r}: {len(images)} images in image_l but {len(poses)} "
                           "poses in poses.txt; expected one image per pose")
    if len(poses) < 2:
        raise DatasetError(f"{str(folder)!r}: {len(poses)} frame; expected at least 2 "
                           "(consecutive frames make the pairs)")
    check_frame_sizes(images, "KITTI")
    return KittiSnippet(folder, poses, P0, P0[:, :3].copy(), images)


@dataclass(frozen=True)
class TumGroundTruth:
    """TUM ground truth rows; ``line_nos`` are the file's (1-based) line numbers."""

    path: Path
    stamps_s: np.ndarray  # (M,) strictly increasing
    p_xyz: np.ndarray  # (M, 3)
    q_xyzw: np.ndarray  # (M, 4) as written (non-zero; the users normalise)
    line_nos: np.ndarray  # (M,)

    def nearest(self, stamp_s: float) -> int:
        """Index of the row nearest to ``stamp_s`` (a frame checked by :meth:`check_covers`)."""
        return int(np.argmin(np.abs(self.stamps_s - stamp_s)))

    def check_covers(self, frames: TumFrames, tolerance_s: float = TUM_GT_TOLERANCE_S) -> None:
        """Every frame has a ground-truth row within ``tolerance_s``.

        Raises:
            DatasetError: a frame lies outside the ground truth's span (more than the
                tolerance), or in a gap between two rows; names the file, frame and span.
        """
        first, last = float(self.stamps_s[0]), float(self.stamps_s[-1])
        for path, stamp in zip(frames.paths, frames.stamps_s, strict=True):
            if stamp < first - tolerance_s or stamp > last + tolerance_s:
                away = first - stamp if stamp < first else stamp - last
                raise DatasetError(
                    f"TUM frame {str(path)!r} at {stamp:.6f} s is {away:.3f} s outside the "
                    f"span {first:.6f}..{last:.6f} s of ground truth {str(self.path)!r}; "
                    f"expected every frame within {tolerance_s} s of it")
            i = self.nearest(stamp)
            gap = abs(float(self.stamps_s[i]) - stamp)
            if gap > tolerance_s:
                j = i + 1 if self.stamps_s[i] < stamp else i - 1
                a, b = sorted((i, j))
                raise DatasetError(
                    f"TUM frame {str(path)!r} at {stamp:.6f} s falls in a gap of ground truth "
                    f"{str(self.path)!r} (lines {self.line_nos[a]}..{self.line_nos[b]}, "
                    f"{self.stamps_s[a]:.6f}..{self.stamps_s[b]:.6f} s): the nearest pose is "
                    f"{gap:.3f} s away; expected within {tolerance_s} s")


def read_tum_groundtruth(path: Path) -> TumGroundTruth:
    """TUM ``timestamp tx ty tz qx qy qz qw`` lines (``#`` comments, blank lines skipped).

    Raises:
        DatasetError: the file is missing, has fewer than 2 rows, or a row is not 8 finite
            numbers, its stamp is not after the previous one, or its quaternion is zero.
    """
    path = Path(path)
    what = "timestamp tx ty tz qx qy qz qw"
    text = _read_text(path, "TUM ground truth", f"lines '{what}'")
    rows: list[list[float]] = []
    line_nos: list[int] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        row = _numbers(path, line_no, stripped.split(), 8, what)
        if rows and row[0] <= rows[-1][0]:
            raise DatasetError(f"{path}:{line_no}: stamp {row[0]!r} is not after {rows[-1][0]!r} "
                               f"(line {line_nos[-1]}); expected increasing stamps")
        if np.linalg.norm(row[4:8]) < 1e-9:
            raise DatasetError(f"{path}:{line_no}: quaternion {row[4:8]!r} is zero; expected a "
                               "unit quaternion qx qy qz qw")
        rows.append(row)
        line_nos.append(line_no)
    if len(rows) < 2:
        raise DatasetError(f"TUM ground truth {str(path)!r} has {len(rows)} pose(s); expected "
                           f"at least 2 lines '{what}' (poses are interpolated between rows)")
    table = np.asarray(rows)
    return TumGroundTruth(path, table[:, 0].copy(), table[:, 1:4].copy(), table[:, 4:8].copy(),
                          np.asarray(line_nos))


@dataclass(frozen=True)
class TumFrames:
    """TUM frame files and their stamps (from the names), in time order."""

    paths: list[Path]
    stamps_s: np.ndarray  # (N,) strictly increasing


def read_tum_frames(folder: Path) -> TumFrames:
    """``<timestamp>.png`` files of ``folder``, ordered by stamp (>= 2 frames).

    Raises:
        DatasetError: fewer than 2 frames, a name that is not a finite stamp, two frames
            with the same stamp, or frames not all of one size (:func:`check_frame_sizes`).
    """
    folder = Path(folder)
    found = []
    for path in folder.glob("*.png"):
        try:
            stamp = float(path.stem)
        except ValueError:
            stamp = float("nan")
        if not np.isfinite(stamp):
            raise DatasetError(f"TUM frame {str(path)!r}: name {path.stem!r} is not a stamp; "
                               "expected <seconds>.png")
        found.append((stamp, path))
    found.sort()
    if len(found) < 2:
        raise DatasetError(f"TUM folder {str(folder)!r} has {len(found)} frame(s); expected at "
                           "least 2 <seconds>.png (consecutive frames make the pairs)")
    for (s0, p0), (s1, p1) in itertools.pairwise(found):
        if s1 == s0:
            raise DatasetError(f"TUM frames {str(p0)!r} and {str(p1)!r} have the same stamp "
                               f"{s0!r}; expected one frame per stamp")
    check_frame_sizes([p for _, p in found], "TUM")
    return TumFrames([p for _, p in found], np.array([s for s, _ in found]))


@dataclass(frozen=True)
class TumSnippet:
    """TUM frames with a ground truth that covers every one of them."""

    folder: Path
    frames: TumFrames
    groundtruth: TumGroundTruth


def read_tum(folder: Path) -> TumSnippet:
    """``assets/freiburg_sequence/*.png`` and ``eao_slam_data/groundtruth.txt`` of the TUM
    snippet, each frame within :data:`TUM_GT_TOLERANCE_S` of a ground-truth pose.

    Raises:
        DatasetError: as :func:`read_tum_frames`, :func:`read_tum_groundtruth` and
            :meth:`TumGroundTruth.check_covers`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"TUM folder {str(folder)!r} does not exist")
    frames = read_tum_frames(folder / "assets" / "freiburg_sequence")
    gt = read_tum_groundtruth(folder / "eao_slam_data" / "groundtruth.txt")
    gt.check_covers(frames)
    return TumSnippet(folder, frames, gt)


__all__ = [
    "KITTI06", "KITTI_TURN", "MONO_SEQUENCES", "TUM_GT_TOLERANCE_S", "TUM_OFFICE",
    "DatasetError", "KittiSnippet", "TumFrames", "TumGroundTruth", "TumSnippet",
    "check_frame_sizes", "image_size", "mono_sequence_folders", "read_kitti",
    "read_kitti_calib_p0", "read_kitti_poses", "read_tum", "read_tum_frames",
    "read_tum_groundtruth",
]
