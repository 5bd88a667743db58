"""Training and evaluation samples for the SLAM core, from real recordings only.

Every sample is at the model resolution (default 64 x 96), made by a centre crop to the
model's aspect ratio and an area resize, with the intrinsics adjusted to match.

- EuRoC stereo (bag or ASL folder via a Sequence): rectified cam0/cam1, SGBM depth of cam0 as
  the target, the rectified pose of cam0 in cam1 (known from the calibration).
- RGB-D pairs (``rgbd_depth_pairs``): image + sensor depth (scales from its PROVENANCE.md).
- scikit-image's Middlebury Motorcycle pair: a rectified stereo pair with depth from the
  ground-truth disparity (calibration from skimage's docstring: f = 994.978 px, principal
  point (311.193, 254.877) px, baseline 0.193001 m, doffs 31.086 px).
- KITTI / TUM consecutive frames with ground-truth poses (no depth): two-view pose pairs.

Split (never trained on): EuRoC pairs with index >= 76 of the 95 (the last 19, about 0.95 s;
the camera is at rest, so these frames show the same scene as the training frames); a pair's
index is its cam0 frame's (cam0 and cam1 are paired by stamp, ``stereo_frame_pairs``); the
Middlebury Motorcycle pair (a scene never seen: the real test of two-view depth); the TUM
RGB-D pair (single-image depth on an unseen scene). KITTI and TUM pose pairs: the first
``MONO_HELD_OUT_PAIRS`` consecutive pairs of each sequence are the benchmark's and never
trained on; the learned step trains on pairs from ``MONO_TRAIN_FROM`` on (a gap of a few
frames, since neighbouring frames share most of their scene).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from meetup_ros.evaluation import datasets
from meetup_ros.slam import SlamError
from meetup_ros.slam.pairing import PAIR_TOLERANCE_S, match_stamps
from meetup_ros.slam.stereo import StereoDepth

logger = logging.getLogger(__name__)

EUROC_HELD_OUT_FROM = 76  # pair index; pairs >= this are held out
MONO_HELD_OUT_PAIRS = 4  # per KITTI/TUM sequence: pairs 0..3 are held out (benchmark)
MONO_TRAIN_FROM = 8  # per sequence: the learned step may train on pairs >= this
# Pairs 4..7 are never trained on either; the benchmark reports them apart ("untouched"):
# pairs 0..3 were used to choose the learned step's training recipe, 4..7 were not.
# Training takes 12 pairs per sequence (8..19). Of the KITTI snippets' 50 pairs, 20..34 were
# used on 2026-12-05 to choose among training recipes (none was kept: README), and 35..49
# ("late") were looked at only after that choice; the TUM frames have 16 pairs, none left.
MONO_LATE_FROM = 35
MONO_LATE_PAIRS = 15
RGBD_TRAIN = ("NYU", "SUN")
RGBD_HELD_OUT = ("TUM",)
TUM_FR3_K = np.array([[535.4, 0.0, 320.1], [0.0, 539.2, 247.6], [0.0, 0.0, 1.0]])


@dataclass
class DepthSample:
    """One image with a metric depth target; ``name`` says where it came from."""

    image: np.ndarray  # (H, W) uint8
    depth_m: np.ndarray  # (H, W) float32, NaN invalid
    name: str


@dataclass
class PairSample:
    """Two views with a known relative pose; depth of view A where known."""

    image_a: np.ndarray  # (H, W) uint8
    image_b: np.ndarray
    K: np.ndarray  # (3, 3) at (H, W), shared by both views
    T_b_a: np.ndarray  # (4, 4) pose of A in B (ground truth)
    depth_a_m: np.ndarray | None  # (H, W) float32 NaN invalid
    name: str
    metric: bool  # whether |t| of T_b_a is metric (stereo) or only known up to scale
    K_b: np.ndarray | None = None  # (3, 3) view B's intrinsics when they differ from K
    sequence: str = ""  # a KITTI/TUM pair's folder under the data root (reported per group)
    frame: int = -1  # a EuRoC pair's cam0 frame index (the number in its name); else -1


def crop_resize(
    image: np.ndarray, K: np.ndarray | None, height: int, width: int, depth: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Centre crop to width/height's aspect ratio, then resize; K follows. Depth: nearest."""
    h0, w0 = image.shape[:2]
    aspect = width / height
    if w0 / h0 > aspect:
        cw, ch = round(h0 * aspect), h0
    else:
        cw, ch = w0, round(w0 / aspect)
    x0, y0 = (w0 - cw) // 2, (h0 - ch) // 2
    crop = image[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_NEAREST if depth else cv2.INTER_AREA
    out = cv2.resize(crop, (width, height), interpolation=interp)
    if K is None:
        return out, None
    sx, sy = width / cw, height / ch
    K2 = K.astype(np.float64).copy()
    K2[0, 2] -= x0
    K2[1, 2] -= y0
    K2[0, 0] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return out, K2


def _cell_indices(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For cells ``edges[i]:edges[i + 1]``: ``(n_cells, longest)`` pixel indices, padded
    with 0, and a mask of the real ones."""
    sizes = np.diff(edges)
    offsets = np.arange(max(int(sizes.max()), 1))
    real = offsets[None, :] < sizes[:, None]
    return np.where(real, edges[:-1, None] + offsets[None, :], 0), real


def downsample_depth(depth_m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Depth to (height, width): median of valid values in each cell after the centre crop.

    Every cell is gathered into one padded row and sorted at once: the loop over cells it
    replaces (one ``np.median`` each) took 0.34 s a frame, most of benchmark-slam's set-up.
    """
    h0, w0 = depth_m.shape
    aspect = width / height
    if w0 / h0 > aspect:
        cw, ch = round(h0 * aspect), h0
    else:
        cw, ch = w0, round(w0 / aspect)
    x0, y0 = (w0 - cw) // 2, (h0 - ch) // 2
    crop = depth_m[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
    if crop.size == 0:  # a crop of no rows or columns (2 x 3 to 7 x 1): no cell is measured
        return np.full((height, width), np.nan, np.float32)
    rows = np.linspace(0, ch, height + 1).astype(int)
    cols = np.linspace(0, cw, width + 1).astype(int)
    r_idx, r_real = _cell_indices(rows)
    c_idx, c_real = _cell_indices(cols)
    with np.errstate(invalid="ignore"):
        valid = np.where(np.isfinite(crop) & (crop > 0), crop, np.float32(np.nan))
    cells = valid[r_idx[:, None, :, None], c_idx[None, :, None, :]]
    real = r_real[:, None, :, None] & c_real[None, :, None, :]
    cells = np.where(real, cells, np.float32(np.nan)).reshape(height, width, -1)
    size = r_real.sum(1)[:, None] * c_real.sum(1)[None, :]
    n = np.isfinite(cells).sum(-1)
    cells.sort(axis=-1)  # NaN last: a cell's n valid values come first
    lo = np.take_along_axis(cells, np.maximum(n - 1, 0)[..., None] // 2, -1)[..., 0]
    hi = np.take_along_axis(cells, (n // 2)[..., None], -1)[..., 0]
    # Half the cell must be measured, else the value is unreliable at edges.
    keep = (n > 0) & (n * 2 >= size)
    # The mean of the middle two in float64, rounded once: np.median's float32 sum, the same
    # but for depths past 1.7e38, where that sum overflows.
    middle = (lo.astype(np.float64) + hi) / 2
    return np.where(keep, middle, np.nan).astype(np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _bag_names(seq: Any) -> str:
    return ", ".join(repr(str(p)) for p in seq.paths)


def check_stereo(seq: Any) -> None:
    """The stereo topics a pair needs, the missing ones named (a tester's message printed
    ``PosixPath(...)`` and did not say which), and the cameras' extrinsics.

    Without /tf_static the reader takes identity for both cameras (a warning), and rectifying
    then failed with "stereo baseline 0.0 m is too small to rectify", which did not say that
    the extrinsics are missing (a tester's bag written by ``meetup-ros record``).
    """
    from meetup_ros.bags import topics

    missing = [name for name, series in ((topics.CAM0_IMAGE, seq.cam0),
                                         (topics.CAM1_IMAGE, seq.cam1)) if series is None]
    if missing:
        raise SlamError(f"bag {_bag_names(seq)} has no {' and no '.join(missing)}; expected a "
                        "stereo EuRoC bag")
    no_extrinsics = [name for name in ("cam0", "cam1") if name not in seq.transforms]
    if no_extrinsics:
        raise SlamError(
            f"bag {_bag_names(seq)} has no {topics.TF_STATIC} transform to "
            f"{' or '.join(no_extrinsics)}: the cam0-cam1 extrinsics (the stereo baseline) are "
            f"missing; expected a stereo EuRoC bag with {topics.TF_STATIC} (a bag written by "
            "`meetup-ros record` has none: it cannot record tf)")


def stereo_frame_pairs(seq: Any, tolerance_s: float = PAIR_TOLERANCE_S) -> list[tuple[int, int]]:
    """``(cam0 index, cam1 index)`` of each stereo pair of ``seq``: stamps within
    ``tolerance_s``, slam_node's rule (``slam.pairing.match_stamps``). Images with no partner
    (a dropped frame) are skipped, their number said in one warning.

    Raises:
        SlamError: a camera or the extrinsics are missing (:func:`check_stereo`), or no image
            has a partner.
    """
    check_stereo(seq)
    stamps0, stamps1 = seq.cam0.stamps_ns, seq.cam1.stamps_ns
    pairs = match_stamps(stamps0, stamps1, round(tolerance_s * 1e9))
    if not pairs:
        raise SlamError(f"bag {_bag_names(seq)}: none of its {len(stamps0)} cam0 images has a "
                        f"cam1 image within {tolerance_s:g} s; expected stereo pairs with "
                        "matching stamps")
    alone0, alone1 = len(stamps0) - len(pairs), len(stamps1) - len(pairs)
    if alone0 or alone1:
        logger.warning("bag %s: %d cam0 and %d cam1 image(s) have no partner within %g s on "
                       "the other camera (dropped frames?): skipped; %d stereo pairs",
                       _bag_names(seq), alone0, alone1, tolerance_s, len(pairs))
    return pairs


def euroc_stereo_pairs(
    bag_paths: object, height: int = 64, width: int = 96, stride: int = 1,
) -> list[PairSample]:
    """Rectified stereo pairs of a EuRoC bag (or bags), with SGBM depth of rectified cam0;
    every ``stride``-th cam0 frame, named by its index (``euroc_076``).

    Raises:
        SlamError: see :func:`stereo_frame_pairs`.
    """
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(bag_paths)  # type: ignore[arg-type]
    frames = stereo_frame_pairs(seq)
    assert seq.cam0 is not None and seq.cam1 is not None and seq.T_cam0_cam1 is not None
    stereo = StereoDepth(seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1)
    T_r0_r1 = stereo.rect.T_rect0_rect1(seq.T_cam0_cam1)
    T_r1_r0 = np.linalg.inv(T_r0_r1)
    out = []
    for i, j in frames:
        if i % stride:
            continue
        rect0, rect1 = stereo.rect.rectify(seq.cam0.images[i], seq.cam1.images[j])
        depth = stereo.rectified_depth(rect0, rect1)
        a, K = crop_resize(rect0, stereo.rect.K_rect, height, width)
        b, _ = crop_resize(rect1, None, height, width)
        assert K is not None
        out.append(PairSample(a, b, K, T_r1_r0, downsample_depth(depth, height, width),
                              f"euroc_{i:03d}", True, frame=i))
    return out


def euroc_split(pairs: list[PairSample], held_stride: int = 1,
                ) -> tuple[list[PairSample], list[PairSample]]:
    """(training, held-out) EuRoC pairs: cam0 frame below ``EUROC_HELD_OUT_FROM`` or not, the
    held-out ones every ``held_stride``-th frame from it. By frame index, not list position:
    a frame without a partner shifts the positions of every later pair."""
    cut = EUROC_HELD_OUT_FROM
    return ([p for p in pairs if p.frame < cut],
            [p for p in pairs if p.frame >= cut and (p.frame - cut) % held_stride == 0])


def euroc_depth_frames(bag_paths: object, stride: int = 1,
                       below_index: int = EUROC_HELD_OUT_FROM) -> list[DepthSample]:
    """Full-resolution rectified cam0 images with SGBM depth, every ``stride``-th cam0 frame
    below ``below_index`` that has a stereo partner."""
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(bag_paths)  # type: ignore[arg-type]
    frames = stereo_frame_pairs(seq)
    assert seq.cam0 is not None and seq.cam1 is not None and seq.T_cam0_cam1 is not None
    stereo = StereoDepth(seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1)
    out = []
    for i, j in frames:
        if i >= below_index or i % stride:
            continue
        rect0, rect1 = stereo.rect.rectify(seq.cam0.images[i], seq.cam1.images[j])
        out.append(DepthSample(rect0, stereo.rectified_depth(rect0, rect1), f"euroc_{i:03d}"))
    return out


def random_crop(sample: DepthSample, height: int, width: int, rng: np.random.Generator,
                min_scale: float = 0.45) -> DepthSample:
    """A random crop of the network's aspect ratio (side ``min_scale``..1 of the largest one),
    resized to (height, width); depth resized by nearest neighbour (keeps NaN holes)."""
    h0, w0 = sample.image.shape[:2]
    aspect = width / height
    cw_max = min(w0, int(h0 * aspect))
    scale = rng.uniform(min_scale, 1.0)
    cw = max(int(cw_max * scale), width)
    ch = max(round(cw / aspect), height)
    x0 = int(rng.integers(0, w0 - cw + 1))
    y0 = int(rng.integers(0, h0 - ch + 1))
    img = cv2.resize(_gray(sample.image)[y0:y0 + ch, x0:x0 + cw], (width, height),
                     interpolation=cv2.INTER_AREA)
    depth = cv2.resize(sample.depth_m[y0:y0 + ch, x0:x0 + cw], (width, height),
                       interpolation=cv2.INTER_NEAREST)
    return DepthSample(img, depth, sample.name)


# Each RGB-D pair's (colour, depth) files in rgbd_depth_pairs (its PROVENANCE.md)
RGBD_FILES = {
    "TUM": ("TUM_color.png", "TUM_depth.png"),
    "NYU": ("NYU_color.ppm", "NYU_depth.pgm"),
    "SUN": ("SUN_color.jpg", "SUN_depth.png"),
}


def rgbd_samples(folder: Path, names: tuple[str, ...], height: int | None = 64,
                 width: int | None = 96) -> list[DepthSample]:
    """Image + sensor depth for the named pairs (TUM, NYU, SUN) in rgbd_depth_pairs; full
    resolution when height/width are None.

    Raises:
        SlamError: a name is not a pair, a file cannot be read, a depth image is not 16-bit
            single-channel (or its PGM is malformed or cut), or colour and depth differ in
            size; the message names the file.
    """
    folder = Path(folder)
    out = []
    for name in names:
        if name not in RGBD_FILES:
            raise SlamError(f"RGB-D pair {name!r} unknown; expected TUM, NYU or SUN")
        color_path, depth_path = (folder / file for file in RGBD_FILES[name])
        img = cv2.imread(str(color_path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise SlamError(f"RGB-D pair {name!r}: colour image {str(color_path)!r} cannot be "
                            "read as an image")
        if name == "NYU":
            raw = _read_pgm16(depth_path)
            depth = 351.3 / (1092.5 - raw.astype(np.float32))
            # 2047 is the Kinect's "no reading" value.
            depth[(raw == 0) | (raw >= 2047) | (depth <= 0) | (depth > 10)] = np.nan
        else:
            raw = _read_depth16(depth_path, name)
            if name == "TUM":
                depth = raw.astype(np.float32) / 5000.0
            else:
                rot = ((raw >> 3) | (raw << 13)).astype(np.uint16)
                depth = rot.astype(np.float32) / 1000.0
        # The pairs are aligned pixel for pixel: a colour image of another size would be
        # cropped and resized apart from its depth (a tester's half-size TUM colour image was
        # trained and evaluated against full-size depth without a word).
        if img.shape != raw.shape:
            raise SlamError(
                f"RGB-D pair {name!r}: colour image {str(color_path)!r} is "
                f"{img.shape[1]}x{img.shape[0]} pixels but depth image {str(depth_path)!r} is "
                f"{raw.shape[1]}x{raw.shape[0]}; expected the same size (aligned pairs)")
        depth[(depth <= 0.1) | (depth > 10)] = np.nan
        if height is None or width is None:
            out.append(DepthSample(img, depth.astype(np.float32), f"rgbd_{name}"))
            continue
        small, _ = crop_resize(img, None, height, width)
        out.append(DepthSample(small, downsample_depth(depth, height, width), f"rgbd_{name}"))
    return out


def _read_depth16(path: Path, name: str) -> np.ndarray:
    """A PNG's raw 16-bit single-channel depth. Another type used to be read as depth: a TUM
    depth saved as 8-bit put every pixel below 0.1 m (all NaN: a null held-out figure, exit
    0), and a 3-channel one failed in numpy with a message naming no file."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise SlamError(f"RGB-D pair {name!r}: depth image {str(path)!r} cannot be read as an "
                        "image")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        channels = 1 if raw.ndim == 2 else raw.shape[2]
        raise SlamError(f"RGB-D pair {name!r}: depth image {str(path)!r} is {channels}-channel "
                        f"{raw.dtype}; expected 16-bit single-channel (uint16) raw sensor depth")
    return raw


def _read_pgm16(path: Path) -> np.ndarray:
    """16-bit P5 PGM. PROVENANCE.md says big-endian, but the file's samples are little-endian:
    read big-endian, the medians are ~54000 (no valid Kinect value); little-endian they are
    ~990, i.e. 3.3 m through the documented conversion, with 2047 (= no reading) at edges.

    Raises:
        SlamError: the file cannot be read, its header is cut or malformed, its samples are
            not 16-bit, or there are fewer than width x height of them; names the file.
    """
    path = Path(path)
    expected = "a binary PGM: P5, width, height, maxval 256..65535, then 16-bit samples"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SlamError(f"depth PGM {str(path)!r} cannot be read: {exc}") from None
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        # b"".isspace() is False: without this an empty file or a cut header spun forever
        if pos >= len(data):
            found = " ".join(f.decode("latin-1") for f in fields) or "nothing"
            raise SlamError(f"depth PGM {str(path)!r} ends in its header after {found!r} "
                            f"({len(fields)} of 4 fields); expected {expected}")
        if data[pos:pos + 1] == b"#":
            end_of_comment = data.find(b"\n", pos)
            pos = len(data) if end_of_comment < 0 else end_of_comment + 1
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P5":
        raise SlamError(f"{str(path)!r} has magic {fields[0]!r}, expected b'P5'")
    values = []
    for label, field in zip(("width", "height", "maxval"), fields[1:], strict=True):
        value = int(field) if field.isdigit() else 0
        if value < 1:
            raise SlamError(f"depth PGM {str(path)!r}: {label} {field!r} is not a positive "
                            f"integer; expected {expected}")
        values.append(value)
    w, h, maxval = values
    samples = data[pos + 1:]  # one whitespace after maxval
    if len(samples) < 2 * w * h:
        raise SlamError(f"depth PGM {str(path)!r} has {len(samples)} bytes of samples after its "
                        f"header; expected {2 * w * h} ({w}x{h} 16-bit samples): the file is cut")
    if not 256 <= maxval <= 65535:
        raise SlamError(f"depth PGM {str(path)!r}: maxval {maxval} is not 16-bit; expected "
                        "256..65535 (two bytes per sample)")
    # Bytes after the first image are not read (the format allows several images per file).
    return np.frombuffer(samples[:2 * w * h], dtype="<u2").reshape(h, w).astype(np.uint16)


def motorcycle_pair(height: int = 64, width: int = 96) -> PairSample:
    """The Middlebury Motorcycle stereo pair (left = A, right = B) with depth from the GT
    disparity: z = f b / (d + doffs), doffs = cx_right - cx_left."""
    import skimage.data

    left, right, disp = skimage.data.stereo_motorcycle()
    f, cx, cy, doffs, baseline = 994.978, 311.193, 254.877, 31.086, 0.193001
    depth = (f * baseline / (disp.astype(np.float64) + doffs)).astype(np.float32)
    depth[~np.isfinite(disp)] = np.nan
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    K_right = K.copy()
    K_right[0, 2] += doffs
    a, Ka = crop_resize(_gray(left), K, height, width)
    b, Kb = crop_resize(_gray(right), K_right, height, width)
    assert Ka is not None and Kb is not None
    T_b_a = np.eye(4)
    T_b_a[0, 3] = -baseline  # the right camera sits +baseline along the left camera's x
    return PairSample(a, b, Ka, T_b_a, downsample_depth(depth, height, width),
                      "middlebury_motorcycle", True, Kb)


def _kitti_pairs(folder: Path, height: int, width: int, step: int,
                 limit: int, first: int = 0, sequence: str = "") -> list[PairSample]:
    kitti = datasets.read_kitti(folder)
    K = kitti.K
    poses = kitti.T_world_cam
    out = []
    for i in range(first * step, min(len(poses) - step, (first + limit) * step), step):
        ia = datasets.read_gray_image(kitti.image_paths[i])
        ib = datasets.read_gray_image(kitti.image_paths[i + step])
        a, Ks = crop_resize(ia, K, height, width)
        b, _ = crop_resize(ib, None, height, width)
        assert Ks is not None
        out.append(PairSample(a, b, Ks, np.linalg.inv(poses[i + step]) @ poses[i], None,
                              f"{folder.name}_{i:03d}", False, sequence=sequence))
    return out


def _quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = q_xyzw / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _tum_pairs(root: Path, height: int, width: int, limit: int,
               first: int = 0, sequence: str = "") -> list[PairSample]:
    # read_tum refuses a frame without a ground-truth row within TUM_GT_TOLERANCE_S, so the
    # nearest row below is at most that far from the frame
    tum = datasets.read_tum(root)
    gt = tum.groundtruth
    frames = list(zip(tum.frames.paths, tum.frames.stamps_s, strict=True))
    out = []
    for (fa, sa), (fb, sb) in list(itertools.pairwise(frames))[first:first + limit]:
        poses = []
        for stamp in (sa, sb):
            i = gt.nearest(stamp)
            T = np.eye(4)
            T[:3, :3] = _quat_to_matrix(gt.q_xyzw[i])
            T[:3, 3] = gt.p_xyz[i]
            poses.append(T)
        ia, ib = datasets.read_gray_image(fa), datasets.read_gray_image(fb)
        a, Ks = crop_resize(ia, TUM_FR3_K, height, width)
        b, _ = crop_resize(ib, None, height, width)
        assert Ks is not None
        out.append(PairSample(a, b, Ks, np.linalg.inv(poses[1]) @ poses[0], None,
                              f"tum_{fa.stem}", False, sequence=sequence))
    return out


def mono_pose_pairs(data_root: Path, height: int = 64, width: int = 96,
                    limit: int = MONO_HELD_OUT_PAIRS, first: int = 0) -> list[PairSample]:
    """Consecutive-frame pairs ``first .. first + limit - 1`` of each KITTI snippet and of the
    TUM frames (pose up to scale). The defaults give the held-out benchmark pairs; training
    takes ``first=MONO_TRAIN_FROM``. ``PairSample.sequence`` is each pair's folder, relative
    to ``data_root`` (``datasets.MONO_SEQUENCES``).

    Raises:
        DatasetError: a sequence folder is missing (all are named: a partial data root used
            to drop its pairs without a word), or a file is malformed, or a TUM frame has no
            ground truth within ``datasets.TUM_GT_TOLERANCE_S``.
    """
    kitti1, kitti2, tum = datasets.mono_sequence_folders(data_root)
    rel_kitti1, rel_kitti2, rel_tum = datasets.MONO_SEQUENCES
    return (_kitti_pairs(kitti1, height, width, 1, limit, first, rel_kitti1)
            + _kitti_pairs(kitti2, height, width, 1, limit, first, rel_kitti2)
            + _tum_pairs(tum, height, width, limit, first, rel_tum))


def pairs_per_sequence(pairs: list[PairSample]) -> dict[str, int]:
    """How many of ``pairs`` come from each KITTI/TUM sequence, 0 for one that gave none
    (the TUM frames have no "late" pairs), so a report says what its figure stands on."""
    counts = dict.fromkeys(datasets.MONO_SEQUENCES, 0)
    for pair in pairs:
        counts[pair.sequence] = counts.get(pair.sequence, 0) + 1
    return counts
