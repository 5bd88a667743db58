"""Frame intervals for training and evaluation, cut from a recording by the same windower.

A recording (``bags.reader.Sequence``) gives the IMU stream, ground truth and, for EuRoC's
micro copy, camera frames only for its first 4.75 s. Interval boundaries are the camera
frames where there are images and, after the last one, every ``imu_per_frame``-th IMU stamp
(20 Hz, a frame rate with no image: the inertial-only mode). Each interval holds its IMU
samples (cut with :class:`~meetup_ros.odometry.windowing.ImuWindower`, so training sees the
windows the estimator sees), the image pair where both frames exist, and the ground-truth
increment ``xi = Log(T_k^-1 T_k+1)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from meetup_ros.bags import topics
from meetup_ros.odometry.model import (
    image_pair_tensor,
    imu_sample_features,
    se3_log,
    window_features,
)
from meetup_ros.odometry.windowing import (
    IMU_ACCEL_LIMIT_MPS2,
    IMU_GYRO_LIMIT_RADPS,
    NS_PER_S,
    ImuWindower,
    OdometryError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundTruthPoses:
    """Ground truth interpolated at given stamps (world -> body)."""

    stamps_ns: np.ndarray  # (N,)
    T_world_body: np.ndarray  # (N, 4, 4)
    v_world_mps: np.ndarray | None  # (N, 3)

    @property
    def p_xyz(self) -> np.ndarray:
        return self.T_world_body[:, :3, 3]

    @property
    def q_xyzw(self) -> np.ndarray:
        return Rotation.from_matrix(self.T_world_body[:, :3, :3]).as_quat()


def interpolate_groundtruth(groundtruth: Any, stamps_ns: np.ndarray) -> GroundTruthPoses:
    """Linear position / slerp attitude of the ground truth at ``stamps_ns`` (inside its span).

    Raises:
        OdometryError: a stamp lies outside the ground truth's span.
    """
    gt_stamps = np.asarray(groundtruth.stamps_ns, dtype=np.int64)
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    steps = np.diff(gt_stamps)
    if steps.size and steps.min() <= 0:
        # (check_groundtruth_stamps names the bag; this is for series from elsewhere)
        k = int(np.argmin(steps))
        raise OdometryError(
            f"ground-truth stamps do not strictly increase: {int(gt_stamps[k + 1])} ns follows "
            f"{int(gt_stamps[k])} ns; two poses for one instant cannot be interpolated")
    if stamps.size and (stamps.min() < gt_stamps[0] or stamps.max() > gt_stamps[-1]):
        outside = stamps[(stamps < gt_stamps[0]) | (stamps > gt_stamps[-1])]
        what = (f"stamp {int(outside[0])} ns" if outside.size == 1 else
                f"{outside.size} stamps ({int(outside.min())}..{int(outside.max())} ns)")
        raise OdometryError(
            f"{what} outside the ground truth's span {int(gt_stamps[0])}..{int(gt_stamps[-1])} "
            "ns: no pose to compare with there")
    t_ref = (gt_stamps - gt_stamps[0]) / NS_PER_S
    t = (stamps - gt_stamps[0]) / NS_PER_S
    p = np.stack([np.interp(t, t_ref, groundtruth.p_world_body[:, i]) for i in range(3)], 1)
    slerp = Slerp(t_ref, Rotation.from_quat(groundtruth.q_world_body_xyzw))
    T = np.tile(np.eye(4), (len(stamps), 1, 1))
    T[:, :3, :3] = slerp(t).as_matrix()
    T[:, :3, 3] = p
    v = None
    if groundtruth.v_world_mps is not None:
        v = np.stack([np.interp(t, t_ref, groundtruth.v_world_mps[:, i]) for i in range(3)], 1)
    return GroundTruthPoses(stamps, T, v)


@dataclass
class Intervals:
    """K consecutive frame intervals as network-ready arrays."""

    frame_stamps_ns: np.ndarray  # (K + 1,)
    imu: np.ndarray  # (K, L, 7) float32
    imu_count: np.ndarray  # (K,) int64
    gyro: np.ndarray  # (K, L, 3) float64 raw, zero-padded
    accel: np.ndarray  # (K, L, 3)
    dt_s: np.ndarray  # (K, L), 0 on padding
    pair: np.ndarray  # (K, 3, H, W) float32, zeros where no images
    image_mask: np.ndarray  # (K,) float32
    xi_gt: np.ndarray  # (K, 6) ground-truth increments
    q_start_xyzw: np.ndarray  # (K, 4) ground-truth attitude at interval start
    v_body_gt: np.ndarray  # (K + 1, 3) ground-truth body velocity at the frames (m/s)
    synthetic: bool = False

    def __len__(self) -> int:
        return int(self.imu_count.shape[0])

    def aux(self, q_start_xyzw: np.ndarray | None = None) -> np.ndarray:
        """Physics features (K, 10) with the given (or ground-truth) start attitudes."""
        q = self.q_start_xyzw if q_start_xyzw is None else q_start_xyzw
        with torch.no_grad():
            return window_features(
                torch.from_numpy(self.gyro), torch.from_numpy(self.accel),
                torch.from_numpy(self.dt_s), torch.from_numpy(q),
            ).numpy()


def check_groundtruth_stamps(seq: Any) -> None:
    """Refuse a recording whose ground truth cannot be interpolated, with the reader's reason.

    Raises:
        OdometryError: a ground-truth stamp repeats or goes back in a bag, or bags overlap in
            time (``bags.reader.Sequence.groundtruth_stamp_error`` names the bag, topic and
            stamp).
    """
    reason = getattr(seq, "groundtruth_stamp_error", None)
    if reason:
        raise OdometryError(reason)


def _bag_names(seq: Any) -> str | list[str]:
    names = [str(p) for p in getattr(seq, "paths", ())]
    return names[0] if len(names) == 1 else names


def check_groundtruth_values(
    seq: Any, use: str = "the increments around it cannot be trained on",
) -> None:
    """Refuse ground truth with a non-finite pose or velocity, naming the stamp; ``use``
    ends the message (what the ground truth was needed for).

    A NaN position interpolated into the increments of the intervals around it, and training
    stopped at "the loss is nan ... the loss or its data" without saying which sample.

    Raises:
        OdometryError: naming the bag, the topic, the message's stamp and the field.
    """
    gt = seq.groundtruth
    if gt is None:
        return
    fields = [("position", gt.p_world_body), ("orientation", gt.q_world_body_xyzw)]
    if gt.v_world_mps is not None:
        fields.append(("velocity", gt.v_world_mps))
    for name, values in fields:
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64)).all(axis=1)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise OdometryError(
                f"bag {_bag_names(seq)!r}: ground truth {topics.GROUNDTRUTH_ODOMETRY!r} at "
                f"stamp {int(gt.stamps_ns[k])} ns (pose {k + 1} of {len(gt.stamps_ns)}) has a "
                f"non-finite {name} {np.asarray(values[k]).tolist()!r}"
                + (f" ({int(bad.sum())} such poses)" if bad.sum() > 1 else "")
                + f"; {use}")


def drop_repeated_frames(seq: Any) -> tuple[Any, int]:
    """``seq`` without camera frames that repeat the previous frame's stamp and picture, and
    how many there were; a warning names the bag, the topic and the count.

    A bag with every image written twice (a recorder subscribed twice, a doubled relay)
    made each repeat a zero-length interval: 84 training intervals became 169 and the loss
    changed, silently. Two different pictures at one stamp are refused: which one was taken
    then cannot be told.

    Raises:
        OdometryError: a camera has two different images at one stamp (naming the topic and
            the stamp).
    """
    dropped_total = 0
    for name in topics.CAMERA_NAMES:
        cam = getattr(seq, name, None)
        if cam is None:
            continue
        stamps = np.asarray(cam.stamps_ns, dtype=np.int64)
        # the reader sorts each camera's frames by stamp (stably): repeats are neighbours
        repeats = np.flatnonzero(np.diff(stamps) == 0) + 1
        if not repeats.size:
            continue
        topic = topics.IMAGE_TOPICS[name]
        for i in map(int, repeats):
            if not np.array_equal(cam.images[i], cam.images[i - 1]):
                raise OdometryError(
                    f"bag {_bag_names(seq)!r}: {topic!r} has two different images at stamp "
                    f"{int(stamps[i])} ns; one frame per stamp is needed (which one was taken "
                    "then cannot be told)")
        keep = np.ones(len(stamps), dtype=bool)
        keep[repeats] = False
        logger.warning("bag %r: %d image(s) on %s repeat the stamp and picture of the one "
                       "before (duplicated messages); dropped", _bag_names(seq),
                       len(repeats), topic)
        cam = replace(cam, stamps_ns=stamps[keep],
                      images=[image for image, k in zip(cam.images, keep, strict=True) if k])
        seq = replace(seq, **{name: cam})
        dropped_total += len(repeats)
    return seq, dropped_total


def valid_imu_stamps(stamps_ns: np.ndarray) -> np.ndarray:
    """Mask of the IMU stamps that can be used: > 0. A stamp of 0 (or below) was never set by
    the driver; the live node refuses it, and offline one such sample queued before the real
    ones made a 1.4e9 s "gap" that reset the windower."""
    return np.asarray(stamps_ns, dtype=np.int64) > 0


def imu_measurements(gyro_radps: np.ndarray, accel_mps2: np.ndarray) -> np.ndarray:
    """(N,) bool: which samples are measurements, by the rule the nodes apply to messages:
    finite, within an IMU's range, and an accelerometer not exactly zero (a driver's
    placeholder, which would integrate as free fall)."""
    gyro = np.asarray(gyro_radps, dtype=np.float64)
    accel = np.asarray(accel_mps2, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        keep = (np.isfinite(gyro).all(1) & np.isfinite(accel).all(1)
                & (np.abs(gyro) <= IMU_GYRO_LIMIT_RADPS).all(1)
                & (np.abs(accel) <= IMU_ACCEL_LIMIT_MPS2).all(1) & accel.any(1))
    return np.asarray(keep, dtype=bool)


def drop_imu_non_measurements(seq: Any) -> tuple[Any, int]:
    """``seq`` without the IMU samples that are not measurements (:func:`imu_measurements`),
    and how many there were; a warning names the bag and the count. Offline, as in the node:
    kept, a second of NaN or 500 m/s^2 samples made dead reckoning 54 m or 2.8 km off, and a
    hole where they were dropped later did not count as a gap."""
    keep = imu_measurements(seq.imu.gyro_radps, seq.imu.accel_mps2)
    return _keep_imu(seq, keep, (
        f"are not measurements (NaN, beyond +-{IMU_GYRO_LIMIT_RADPS:g} rad/s or "
        f"+-{IMU_ACCEL_LIMIT_MPS2:g} m/s^2, or an accelerometer of exactly zero; the first at "
        f"{int(np.asarray(seq.imu.stamps_ns)[~keep][0]) if not keep.all() else 0} ns)"))


def drop_invalid_imu_stamps(seq: Any) -> tuple[Any, int]:
    """``seq`` without its IMU samples stamped 0 or below, and how many there were; a warning
    names the bag, the topic and the count."""
    keep = valid_imu_stamps(seq.imu.stamps_ns)
    bad = np.asarray(seq.imu.stamps_ns)[~keep]
    return _keep_imu(seq, keep, f"have an invalid stamp ({sorted({int(s) for s in bad})[:3]} "
                                "ns: 0 or negative, never set)")


def _keep_imu(seq: Any, keep: np.ndarray, why: str) -> tuple[Any, int]:
    """``seq`` with only the IMU samples ``keep`` marks, and how many went; a warning names
    the bag, the count and ``why``."""
    dropped = int(np.count_nonzero(~keep))
    if not dropped:
        return seq, 0
    names = [str(p) for p in getattr(seq, "paths", ())]
    logger.warning("bag %r: %d IMU sample(s) on /imu0 %s; dropped",
                   names[0] if len(names) == 1 else names, dropped, why)
    imu = replace(seq.imu, stamps_ns=seq.imu.stamps_ns[keep], gyro_radps=seq.imu.gyro_radps[keep],
                  accel_mps2=seq.imu.accel_mps2[keep])
    return replace(seq, imu=imu), dropped


def frame_stamps(seq: Any, imu_per_frame: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Interval boundaries (stamps_ns, has_image) over the IMU span; see the module doc."""
    imu_stamps = np.asarray(seq.imu.stamps_ns, dtype=np.int64)
    imu_stamps = imu_stamps[valid_imu_stamps(imu_stamps)]
    if imu_stamps.size == 0:
        raise OdometryError(f"bag {[str(p) for p in getattr(seq, 'paths', ())]!r}: every "
                            "/imu0 stamp is 0 or negative (never set); no interval can be cut")
    cams = np.asarray(seq.cam0.stamps_ns, dtype=np.int64) if seq.cam0 is not None else \
        np.zeros(0, dtype=np.int64)
    start = int(cams[0]) if cams.size else int(imu_stamps[0])
    after = imu_stamps[imu_stamps > (int(cams[-1]) if cams.size else start)]
    extra = after[imu_per_frame - 1::imu_per_frame]
    stamps = np.concatenate([cams, extra]) if cams.size else np.concatenate([[start], extra])
    has_image = np.zeros(len(stamps), dtype=bool)
    has_image[: cams.size] = True
    if seq.groundtruth is not None:  # intervals need ground truth at both ends
        gt = np.asarray(seq.groundtruth.stamps_ns)
        keep = (stamps >= gt[0]) & (stamps <= gt[-1])
        stamps, has_image = stamps[keep], has_image[keep]
    return stamps, has_image


def build_intervals(
    seq: Any,
    stamps_ns: np.ndarray,
    has_image: np.ndarray,
    image_hw: tuple[int, int],
    *,
    max_samples: int = 24,
) -> Intervals:
    """Cut ``seq``'s IMU at ``stamps_ns`` and attach images and ground-truth increments."""
    if seq.imu is None or seq.groundtruth is None:
        raise OdometryError("the recording needs /imu0 and ground truth to build intervals")
    check_groundtruth_stamps(seq)
    check_groundtruth_values(seq)
    windower = ImuWindower(capacity=100_000)
    imu = drop_invalid_imu_stamps(seq)[0].imu
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    first = int(np.searchsorted(imu.stamps_ns, stamps_ns[0], side="right"))
    # samples up to the first boundary only set the dt of the first interval's first sample
    if first:
        windower.add(int(imu.stamps_ns[first - 1]), imu.gyro_radps[first - 1],
                     imu.accel_mps2[first - 1])
        windower.take(int(stamps_ns[0]))
    last = int(np.searchsorted(imu.stamps_ns, stamps_ns[-1], side="right"))
    for i in range(first, last):
        windower.add(int(imu.stamps_ns[i]), imu.gyro_radps[i], imu.accel_mps2[i])
    k = len(stamps_ns) - 1
    length = max_samples
    gyro = np.zeros((k, length, 3))
    accel = np.zeros((k, length, 3))
    dt = np.zeros((k, length))
    feats = np.zeros((k, length, 7), dtype=np.float32)
    count = np.zeros(k, dtype=np.int64)
    for j in range(k):
        w = windower.take(int(stamps_ns[j + 1]))
        n = min(len(w), length)
        if len(w) > length:
            logger.warning("interval %d has %d IMU samples; keeping the last %d", j, len(w),
                           length)
        count[j] = n
        gyro[j, :n], accel[j, :n], dt[j, :n] = w.gyro_radps[-n:], w.accel_mps2[-n:], \
            w.dt_s[-n:]
        feats[j, :n] = imu_sample_features(gyro[j, :n], accel[j, :n], dt[j, :n])
    gt = interpolate_groundtruth(seq.groundtruth, stamps_ns)
    rel = np.linalg.inv(gt.T_world_body[:-1]) @ gt.T_world_body[1:]
    xi = se3_log(rel)
    h, w_px = image_hw
    pair = np.zeros((k, 3, h, w_px), dtype=np.float32)
    mask = (has_image[:-1] & has_image[1:]).astype(np.float32)
    if seq.cam0 is not None and mask.any():
        index = {int(s): i for i, s in enumerate(seq.cam0.stamps_ns)}
        for j in map(int, np.flatnonzero(mask)):
            a = seq.cam0.images[index[int(stamps_ns[j])]]
            b = seq.cam0.images[index[int(stamps_ns[j + 1])]]
            pair[j] = image_pair_tensor(a, b, h, w_px)
    if gt.v_world_mps is not None:
        v_body = np.einsum("nji,nj->ni", gt.T_world_body[:, :3, :3], gt.v_world_mps)
    else:  # finite differences of the positions
        v_world = np.gradient(gt.p_xyz, (stamps_ns - stamps_ns[0]) / NS_PER_S, axis=0)
        v_body = np.einsum("nji,nj->ni", gt.T_world_body[:, :3, :3], v_world)
    return Intervals(stamps_ns, feats, count, gyro, accel, dt, pair, mask, xi,
                     gt.q_xyzw[:-1].copy(), v_body)


def select(iv: Intervals, index: np.ndarray) -> Intervals:
    """The intervals at ``index`` (contiguous ranges keep their frame stamps)."""
    index = np.asarray(index)
    stamps = np.concatenate([iv.frame_stamps_ns[index], iv.frame_stamps_ns[index[-1:] + 1]])
    v_body = np.concatenate([iv.v_body_gt[index], iv.v_body_gt[index[-1:] + 1]])
    return Intervals(stamps, iv.imu[index], iv.imu_count[index], iv.gyro[index],
                     iv.accel[index], iv.dt_s[index], iv.pair[index], iv.image_mask[index],
                     iv.xi_gt[index], iv.q_start_xyzw[index], v_body, iv.synthetic)
