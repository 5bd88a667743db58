"""slam_node: depth-code SLAM on stereo keyframes, with the odometry pose as a prior.

Subscribes ``/cam0/image_raw`` and ``/cam1/image_raw`` (paired by stamp), their
``camera_info`` (intrinsics; the frontend is built once both have arrived) and ``/odom``
(pose prior: a pair waits up to ``prior_wait_s`` for the odometry of its stamp, which comes
after the frame). Each pair goes to ``slam.frontend.SlamFrontend.process``;
each keyframe it returns is published as ``/depth`` (32FC1 metres, NaN invalid, frame cam0,
the keyframe's stamp), ``/slam/pose`` (PoseStamped T_world_cam0) and ``/slam/points``
(PointCloud2 xyz float32, frame cam0). Extrinsics (cam0 and cam1 in the base frame) are
parameters: /tf_static cannot be read where tf2_msgs is not installed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from meetup_ros import paths
from meetup_ros.ros import RosInputError
from meetup_ros.ros.convert import (
    array_to_image,
    image_to_mono8,
    odometry_to_arrays,
    point_cloud_xyz_msg,
    pose_stamped_msg,
    stamp_to_ns,
)
from meetup_ros.ros.node_tools import (
    MAX_TIMER_PERIOD_S,
    SENSOR_RELIABILITY,
    NodeHealth,
    TransportLoss,
    limit_cpu_threads,
    lower_cpu_priority,
    reliable_qos,
    sensor_events,
    sensor_qos,
    spin_node,
)
from meetup_ros.ros.params import check_param, declare_parameters, param
from meetup_ros.slam import SlamError
from meetup_ros.slam.camera import check_intrinsics
from meetup_ros.slam.frontend import (
    SOLVERS,
    FrontendConfig,
    SlamFrontend,
    load_networks,
    warm_up_solver,
)
from meetup_ros.slam.pairing import PAIR_TOLERANCE_S, FramePair, PriorWait, StereoPairs

NODE_NAME = "slam_node"
_FRONTEND = FrontendConfig()  # the frontend's own defaults are the node's defaults
# EuRoC V1_01 T_BS of cam0 and cam1 (sensor.yaml): camera -> body, row-major.
EUROC_T_BASE_CAM0 = (
    0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
    0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
    -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949,
    0.0, 0.0, 0.0, 1.0,
)
EUROC_T_BASE_CAM1 = (
    0.0125552670891, -0.999755099723, 0.0182237714554, -0.0198435579556,
    0.999598781151, 0.0130119051815, 0.0251588363115, 0.0453689425024,
    -0.0253898008918, 0.0179005838253, 0.999517347078, 0.00786212447038,
    0.0, 0.0, 0.0, 1.0,
)


@dataclass(frozen=True)
class SlamParams:
    depth_weights: str = param("depth_code.pt", "depth autoencoder weights (models/)")
    optimizer_weights: str = param(
        "slam_optimizer.pt", "learned optimiser weights (models/); '' with a classical solver"
    )
    cam0_topic: str = param("cam0/image_raw", "left image")
    cam1_topic: str = param("cam1/image_raw", "right image; '' for monocular")
    cam0_info_topic: str = param("cam0/camera_info", "left intrinsics")
    cam1_info_topic: str = param("cam1/camera_info", "right intrinsics")
    odom_topic: str = param("odom", "pose prior (nav_msgs/Odometry); '' for none")
    depth_topic: str = param("depth", "keyframe depth (32FC1, metres, NaN invalid)")
    pose_topic: str = param("slam/pose", "keyframe pose T_world_cam0")
    points_topic: str = param("slam/points", "keyframe points (cam0 frame)")
    world_frame: str = param(
        "world", "frame_id of /slam/pose without odometry (monocular, chained two-view poses); "
                 "with odometry the pose is in the odometry's frame (its header.frame_id)")
    T_base_cam0: tuple[float, ...] = param(EUROC_T_BASE_CAM0, "cam0 -> base (4x4 row-major)")
    T_base_cam1: tuple[float, ...] = param(EUROC_T_BASE_CAM1, "cam1 -> base (4x4 row-major)")
    solver: str = param(_FRONTEND.solver, "learned | gauss_newton | levenberg_marquardt")
    iterations: int = param(_FRONTEND.iterations, "solver iterations per keyframe, at most")
    tolerance: float = param(
        _FRONTEND.tolerance, "stop a keyframe's solve once an iteration changes the error by "
        "less than this share (0: always `iterations`)")
    keyframe_translation_m: float = param(
        _FRONTEND.keyframe_translation_m, "new keyframe after this much odometry motion (m)"
    )
    keyframe_rotation_rad: float = param(
        _FRONTEND.keyframe_rotation_rad, "new keyframe after this much rotation (rad)"
    )
    keyframe_every_n: int = param(_FRONTEND.keyframe_every_n, "new keyframe every n pairs")
    keyframe_interval_s: float = param(
        _FRONTEND.keyframe_interval_s, "new keyframe at least this often (s of stamps)"
    )
    sensor_reliability: str = param(
        "reliable", "QoS of the image and camera_info subscriptions: 'reliable' (lossless "
                    "from reliable publishers) or 'best_effort' (also matches drivers that "
                    "publish best effort, ROS's sensor-data profile)"
    )
    min_two_view_support: float = param(
        _FRONTEND.min_two_view_support,
        "a keyframe's depth is published as NaN unless the second view (cam1, or the previous "
        "keyframe) explains this share of the photometric error the two views leave with no "
        "depth (frontend.FrontendConfig); 0 = publish the single-image guess too")
    max_stereo_rotation_deg: float = param(
        _FRONTEND.max_stereo_rotation_deg,
        "stereo: depth is NaN when the pair fits its calibration only turned by more (deg)")
    pair_tolerance_s: float = param(PAIR_TOLERANCE_S,
                                    "cam0/cam1 stamps closer than this are a pair")
    prior_tolerance_s: float = param(0.03, "odometry used as prior within this of a frame")
    # The odometry of a frame comes after the frame (vio_node waits for the IMU sample after
    # it, then runs its network: 10-50 ms): looked up on arrival, the nearest odometry was
    # the previous frame's, 50 ms off, so no pair ever had a prior and every /slam/pose was
    # the identity (a tester's finding in `make demo`).
    prior_wait_s: float = param(
        0.5, "a pair waits up to this long (wall clock) for odometry at or after its stamp; "
             "then it is processed with whatever prior there is (none: said and counted)"
    )
    max_pending: int = param(10, "unpaired frames held per camera")
    reset_backwards_s: float = param(
        1.0, "a pair stamped this far before the previous one resets (a loop); a pair at or "
             "less far before the previous one (a duplicate) is dropped"
    )
    diagnostics_period_s: float = param(2.0, "period of /diagnostics (s); 0 disables")
    torch_threads: int = param(
        1, "CPU threads of torch, BLAS and OpenMP in this node's process (several nodes "
        "share few cores)"
    )
    nice_increment: int = param(
        0, "lower this process's CPU priority by this much (os.nice) at start: keyframes "
           "are background work next to the 20 Hz odometry and the safety monitor"
    )


IMAGE_QUEUE_DEPTH = 100
INFO_CHANGE_MESSAGES = 20  # camera_info messages a new calibration must hold for (1 s at 20 Hz)
MAX_WAIT_S = 10.0  # pairing and prior waits: longer is a clock fault, not a wait
RIGID_TOLERANCE = 1e-4  # on R R^T - I and det R - 1: calibration files print 6+ digits
MIN_BASELINE_M = 1e-3  # what slam.camera.StereoRectification can rectify


def _same_calibration(a: CameraInfo, b: CameraInfo) -> bool:
    return ((a.width, a.height, a.distortion_model) == (b.width, b.height, b.distortion_model)
            and list(a.k) == list(b.k) and list(a.d) == list(b.d))


def _is_rigid(values: Sequence[float]) -> bool:
    T = np.asarray(values, dtype=np.float64)
    if T.shape != (16,) or not np.all(np.isfinite(T)):
        return False
    T = T.reshape(4, 4)
    R = T[:3, :3]
    return (np.array_equal(T[3], [0.0, 0.0, 0.0, 1.0])
            and np.allclose(R @ R.T, np.eye(3), rtol=0.0, atol=RIGID_TOLERANCE)
            and abs(np.linalg.det(R) - 1.0) <= RIGID_TOLERANCE)


def _check_params(p: SlamParams) -> None:
    """Refuse parameter values outside their meaning at start-up (a NaN in T_base_cam0 was
    taken and crashed the node in OpenCV on the first camera_info; a pair_tolerance_s of -1
    dropped every frame as unpaired).

    Raises:
        RosInputError: naming the parameter, its value and what is expected.
    """
    def need(ok: bool, name: str, expected: str) -> None:
        check_param(p, ok, name, expected)

    def finite_at_least_0(name: str, unit: str) -> None:
        value = getattr(p, name)
        need(math.isfinite(value) and value >= 0, name, f"a finite value >= 0 ({unit})")

    required = ["cam0_topic", "cam0_info_topic", "depth_topic", "pose_topic", "points_topic",
                "world_frame"] + (["cam1_info_topic"] if p.cam1_topic else [])
    for name in required:
        need(bool(getattr(p, name)), name, "a non-empty name")
    need(p.solver in SOLVERS, "solver", f"one of {SOLVERS}")
    need(p.sensor_reliability in SENSOR_RELIABILITY, "sensor_reliability",
         f"one of {SENSOR_RELIABILITY}")
    need(p.solver != "learned" or bool(p.optimizer_weights), "optimizer_weights",
         "a weights file with solver 'learned'")
    for name in ("T_base_cam0", "T_base_cam1"):
        need(_is_rigid(getattr(p, name)), name,
             "a 4x4 row-major rigid transform: 16 finite values, rotation orthonormal with "
             f"det +1 (within {RIGID_TOLERANCE:g}), last row 0 0 0 1")
    if p.cam1_topic:
        baseline = float(np.linalg.norm(np.subtract(p.T_base_cam1, p.T_base_cam0)[[3, 7, 11]]))
        need(baseline >= MIN_BASELINE_M, "T_base_cam1",
             f"cam1 at least {MIN_BASELINE_M:g} m from cam0 (T_base_cam0) for stereo; got a "
             f"baseline of {baseline:g} m")
    for name in ("iterations", "keyframe_every_n", "max_pending", "torch_threads"):
        need(getattr(p, name) >= 1, name, "an integer >= 1")
    finite_at_least_0("keyframe_translation_m", "m")
    need(0.0 <= p.tolerance < 1.0, "tolerance", "a value in [0, 1) (a relative change)")
    # The frontend's rotation since the last keyframe is at most pi: more never triggers.
    need(0.0 <= p.keyframe_rotation_rad <= math.pi, "keyframe_rotation_rad",
         "an angle in [0, pi] rad")
    for name in ("keyframe_interval_s", "prior_tolerance_s"):
        finite_at_least_0(name, "s")
    # Stamps are int64 nanoseconds: a tolerance of 1e300 s crashed on the first image.
    for name in ("pair_tolerance_s", "prior_wait_s"):
        need(0.0 <= getattr(p, name) <= MAX_WAIT_S, name, f"a value in [0, {MAX_WAIT_S:g}] s")
    need(0.0 <= p.min_two_view_support < 1.0, "min_two_view_support",
         "a share in [0, 1) (0 publishes unconfirmed depth)")
    need(0.0 < p.max_stereo_rotation_deg <= 180.0, "max_stereo_rotation_deg",
         "an angle in (0, 180] deg")
    need(math.isfinite(p.reset_backwards_s) and p.reset_backwards_s > 0, "reset_backwards_s",
         "a finite value > 0 (s)")
    need(math.isfinite(p.diagnostics_period_s)
         and 0.0 <= p.diagnostics_period_s <= MAX_TIMER_PERIOD_S, "diagnostics_period_s",
         f"a finite period in [0, {MAX_TIMER_PERIOD_S:g}] s (0 disables)")
    # Niceness goes up to 19; a negative increment is refused, naming it, by
    # lower_cpu_priority (a node may only lower its own priority).
    need(p.nice_increment <= 19, "nice_increment", "an increment in [0, 19]")


class SlamNode(Node):
    """Stereo pairs + odometry prior -> SlamFrontend -> depth, pose, points."""

    def __init__(self, **node_kwargs: object) -> None:
        super().__init__(NODE_NAME, **node_kwargs)  # type: ignore[arg-type]
        self.params = declare_parameters(self, SlamParams)
        p = self.params
        _check_params(p)
        # Oversubscribed intra-op threads made one 50 ms certificate take 2.4 s on 2 cores.
        limit_cpu_threads(p.torch_threads)
        lower_cpu_priority(self, p.nice_increment)
        self.T_base_cam0 = np.asarray(p.T_base_cam0, dtype=np.float64).reshape(4, 4)
        self.T_base_cam1 = np.asarray(p.T_base_cam1, dtype=np.float64).reshape(4, 4)
        self.stereo = bool(p.cam1_topic)
        # Weights load now, so that a missing or stale file stops the node at start-up; the
        # frontend itself needs the intrinsics and is built when camera_info arrives.
        self.frontend_config = FrontendConfig(
            solver=p.solver, iterations=p.iterations, tolerance=p.tolerance,
            keyframe_translation_m=p.keyframe_translation_m,
            keyframe_rotation_rad=p.keyframe_rotation_rad,
            keyframe_every_n=p.keyframe_every_n, keyframe_interval_s=p.keyframe_interval_s,
            min_two_view_support=p.min_two_view_support,
            max_stereo_rotation_deg=p.max_stereo_rotation_deg,
        )
        depth_path = paths.node_file(p.depth_weights, "models")
        step_path = paths.node_file(p.optimizer_weights, "models") if p.optimizer_weights else None
        self.depth_model, self.step = load_networks(depth_path, step_path, p.solver)
        self.weights = [depth_path]  # the files in use: a classical solver loads no step
        if self.step is not None and step_path is not None:
            self.weights.append(step_path)
        # torch's first solve now rather than when camera_info arrives: that is the start of
        # the stream, where the cold solve (~40 ms) competed with vio_node's first frames.
        warm_up_solver(self.depth_model, self.step, self.frontend_config)
        self.frontend: Any = None
        self._info: dict[str, CameraInfo] = {}
        # A calibration other than the one in use, and how many messages in a row gave it.
        self._info_change: dict[str, tuple[CameraInfo, int]] = {}
        self._hw: dict[str, tuple[int, int]] = {}
        # Why a camera's camera_info was refused, until one is taken: said with the frames
        # dropped meanwhile, which read "before camera_info" as if none had come.
        self._refused: dict[str, str] = {}
        self.health = NodeHealth(self, ["keyframe", "keyframe_cpu", "frame",
                                        "pair_wait_for_odometry"],
                                 p.diagnostics_period_s)
        self.pairs = StereoPairs(
            stereo=self.stereo, tolerance_ns=int(p.pair_tolerance_s * 1e9),
            max_pending=p.max_pending, report=self.health.problem,
            topics={"cam0": p.cam0_topic, "cam1": p.cam1_topic},
            reset_back_ns=int(p.reset_backwards_s * 1e9))
        self.priors = PriorWait(wait_s=p.prior_wait_s,
                                tolerance_ns=int(p.prior_tolerance_s * 1e9),
                                max_pending=p.max_pending, enabled=bool(p.odom_topic))
        # The frame the odometry's poses are in: a pose from the prior is in it, not in
        # world_frame (a tester's poses said 'world' for the odometry's 'odom').
        self._odom_frame = p.world_frame
        self._last_pair_ns: int | None = None
        self.depth_pub = self.create_publisher(Image, p.depth_topic, reliable_qos(10))
        self.pose_pub = self.create_publisher(PoseStamped, p.pose_topic, reliable_qos(10))
        self.points_pub = self.create_publisher(PointCloud2, p.points_topic, reliable_qos(10))
        self.create_subscription(
            CameraInfo, p.cam0_info_topic, lambda m: self._on_info("cam0", m),
            sensor_qos(5, p.sensor_reliability)
        )
        self.transport = TransportLoss(self.health)
        # 5 s at 20 Hz: the frontend is built in the callback of the first camera_info, and
        # a CPU-starved (niced) slam_node took over 1 s there in a full test run, when the
        # 20-deep queue dropped the oldest images (publication sequence 2 -> 5)
        self.create_subscription(
            Image, p.cam0_topic, lambda m, info: self._on_image("cam0", m, info),
            sensor_qos(IMAGE_QUEUE_DEPTH, p.sensor_reliability),
            event_callbacks=sensor_events(self.health, p.cam0_topic)
        )
        if self.stereo:
            self.create_subscription(
                CameraInfo, p.cam1_info_topic, lambda m: self._on_info("cam1", m),
                sensor_qos(5, p.sensor_reliability),
            )
            self.create_subscription(
                Image, p.cam1_topic, lambda m, info: self._on_image("cam1", m, info),
                sensor_qos(IMAGE_QUEUE_DEPTH, p.sensor_reliability),
                event_callbacks=sensor_events(self.health, p.cam1_topic)
            )
        if p.odom_topic:
            self.create_subscription(Odometry, p.odom_topic, self._on_odom, reliable_qos(50))
            # Pairs whose odometry never comes (stopped, another clock) go on after the wait.
            self.create_timer(0.05, self._drain)
        elif self.stereo:
            self.get_logger().warning(
                "stereo without odom_topic: /slam/pose is not published (a stereo pair says "
                "nothing of the motion); depth and points are")
        self.get_logger().info(
            f"SLAM on {p.cam0_topic}" + (f" + {p.cam1_topic}" if self.stereo else " (mono)")
            + f", prior {p.odom_topic or 'none'} -> {p.depth_topic}, {p.pose_topic}; solver "
            + f"{p.solver} (at most {p.iterations} iterations, tolerance {p.tolerance:g}); "
            + "weights " + ", ".join(map(str, self.weights))
        )

    # ---- inputs ----------------------------------------------------------------------------

    def _info_topic(self, cam: str) -> str:
        return self.params.cam0_info_topic if cam == "cam0" else self.params.cam1_info_topic

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        if cam in self._info:
            self._follow_info_change(cam, msg)
            return
        # A bad camera_info is refused here, and the node waits for a good one.
        try:
            check_intrinsics(msg.k, msg.d, int(msg.width), int(msg.height),
                             msg.distortion_model)
        except SlamError as exc:
            self.health.problem(
                "bad_camera_info",
                f"{cam} {self._info_topic(cam)}: {exc}; waiting for a calibrated camera_info",
            )
            self._refused[cam] = str(exc)
            return
        self._info[cam] = msg
        self._hw[cam] = (int(msg.height), int(msg.width))
        self._refused.pop(cam, None)
        if "cam0" in self._info and ("cam1" in self._info or not self.stereo):
            self._build_frontend()

    def _follow_info_change(self, cam: str, msg: CameraInfo) -> None:
        """Take a new calibration once it has held for ``INFO_CHANGE_MESSAGES`` messages.

        The camera was reconfigured (another resolution) or its first calibration was wrong:
        kept for good, the first one dropped every later frame (a tester's). One odd message
        changes nothing; the frontend is rebuilt, and its keyframes start over.
        """
        if _same_calibration(msg, self._info[cam]):
            dropped = self._info_change.pop(cam, None)
            if dropped is not None:  # said, as the start of the disagreement was
                self.get_logger().info(
                    f"{self._info_topic(cam)}: the calibration in use again after "
                    f"{dropped[1]} different message(s); the other one was not taken")
            return
        candidate, count = self._info_change.get(cam, (None, 0))
        count = count + 1 if candidate is not None and _same_calibration(msg, candidate) else 1
        self._info_change[cam] = (msg, count)
        if count == 1:
            # A tester's 15 messages of another fx were ignored, rightly, and without a word.
            old = self._info[cam]
            self.health.problem(
                "camera_info_disagrees",
                f"{self._info_topic(cam)}: a calibration other than the one in use (size "
                f"{old.width}x{old.height} -> {msg.width}x{msg.height}, K "
                f"{[round(float(v), 4) for v in old.k]} -> "
                f"{[round(float(v), 4) for v in msg.k]}); taken only if it holds for "
                f"{INFO_CHANGE_MESSAGES} messages")
        if count < INFO_CHANGE_MESSAGES:
            return
        try:
            check_intrinsics(msg.k, msg.d, int(msg.width), int(msg.height),
                             msg.distortion_model)
        except SlamError as exc:
            self.health.problem("bad_camera_info", f"{cam} {self._info_topic(cam)}: {exc}; "
                                "keeping the calibration in use")
            self._info_change.pop(cam, None)
            return
        old = self._info[cam]
        self.get_logger().warning(
            f"{self._info_topic(cam)}: calibration changed for {count} messages (size "
            f"{old.width}x{old.height} -> {msg.width}x{msg.height}, K "
            f"{[round(float(v), 4) for v in old.k]} -> {[round(float(v), 4) for v in msg.k]});"
            " taking it, rebuilding the frontend (keyframes start over)")
        self.health.counters["camera_info_changes"] += 1
        self._info[cam] = msg
        self._hw[cam] = (int(msg.height), int(msg.width))
        self._info_change.pop(cam, None)
        self.pairs.clear()  # frames of the old size
        self.priors.clear_pairs()
        self.frontend = None
        # A stereo camera reconfigured changes both: wait for the other's new size.
        if ("cam0" in self._info and ("cam1" in self._info or not self.stereo)
                and len({self._hw[c] for c in self._info}) == 1):
            self._build_frontend()

    def _camera(self, cam: str) -> Any:
        from meetup_ros.bags.reader import CameraInfo as CameraModel

        msg = self._info[cam]
        return CameraModel(
            frame_id=msg.header.frame_id or cam,
            K=np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
            dist=np.asarray(msg.d[:4], dtype=np.float64),
            width=int(msg.width),
            height=int(msg.height),
            T_body_cam=self.T_base_cam0 if cam == "cam0" else self.T_base_cam1,
            distortion_model=msg.distortion_model,
        )

    def _build_frontend(self) -> None:
        camera1 = self._camera("cam1") if self.stereo else None
        T_cam0_cam1 = np.linalg.inv(self.T_base_cam0) @ self.T_base_cam1 if self.stereo else None
        try:
            self.frontend = SlamFrontend(
                self.depth_model, self.step, self._camera("cam0"), camera1, T_cam0_cam1,
                self.frontend_config, warm_up=False,
            )
        except SlamError as exc:
            self.health.problem("bad_camera_info", f"cannot build the frontend: {exc}")
            self._refused.update(dict.fromkeys(self._info, f"cannot build the frontend: {exc}"))
            self._info.clear()  # try again with the next camera_info pair
            return
        self.get_logger().info(
            f"frontend ready: cam0 {self._hw['cam0']}"
            + (f", baseline {np.linalg.norm(T_cam0_cam1[:3, 3]):.4f} m" if self.stereo
               and T_cam0_cam1 is not None else "")
        )

    def _no_frontend_reason(self) -> str:
        """Why a frame is dropped before the frontend is built: no camera_info yet, only
        refused ones (and why), or a calibration change waiting for the other camera."""
        cams = ("cam0", "cam1") if self.stereo else ("cam0",)
        waiting = [cam for cam in cams if cam not in self._info]
        if not waiting:
            sizes = ", ".join(f"{cam} {self._hw[cam]}" for cam in cams)
            return (f"frames dropped: the cameras' calibrations differ in size ({sizes}); "
                    "waiting for the other camera's new camera_info")
        topics = ", ".join(self._info_topic(cam) for cam in waiting)
        refused = [f"{self._info_topic(cam)}: {self._refused[cam]}"
                   for cam in waiting if cam in self._refused]
        if not refused:
            return f"frames before camera_info on {topics}: dropped"
        return (f"frames before a usable camera_info on {topics}: dropped; refused "
                f"{'; '.join(refused)}")

    def _on_odom(self, msg: Odometry) -> None:
        try:
            odom = odometry_to_arrays(msg, topic=self.params.odom_topic)
        except RosInputError as exc:
            self.health.problem("bad_odometry", str(exc))
            return
        self.priors.add_odometry(odom.stamp_ns, odom.T_odom_base)
        self._odom_frame = msg.header.frame_id or self._odom_frame
        self._drain()

    def _on_image(self, cam: str, msg: Image, info: Any = None) -> None:
        topic = self.params.cam0_topic if cam == "cam0" else self.params.cam1_topic
        self.transport.seen(topic, info)
        try:
            image = image_to_mono8(msg, topic=topic, expected_hw=self._hw.get(cam))
            stamp_ns = stamp_to_ns(msg.header.stamp, topic)
        except RosInputError as exc:
            self.health.problem("bad_image", f"dropped: {exc}")
            return
        for pair in self.pairs.add(cam, stamp_ns, image):
            for waited in self.priors.add(pair, time.monotonic()):
                self._process_waited(*waited)  # odometry far behind: on rather than lost
            self._drain()

    def _drain(self) -> None:
        """Process waiting pairs whose odometry has come or that waited ``prior_wait_s``,
        oldest first (the clock read again after each: a keyframe takes tens of ms)."""
        while (ready := self.priors.pop_ready(time.monotonic())) is not None:
            self._process_waited(*ready)

    def _process_waited(self, pair: FramePair, waited_s: float) -> None:
        if self.params.odom_topic:
            self.health.latency["pair_wait_for_odometry"].add(waited_s)
        self._process(pair.stamp_ns, pair.image0, pair.image1)

    def _prior(self, stamp_ns: int) -> np.ndarray | None:
        T_odom_base = self.priors.prior(stamp_ns)
        return None if T_odom_base is None else T_odom_base @ self.T_base_cam0

    # ---- processing ------------------------------------------------------------------------

    def _process(self, stamp_ns: int, image0: np.ndarray, image1: np.ndarray | None) -> None:
        if self.frontend is None:
            self.health.problem("waiting_for_camera_info", self._no_frontend_reason())
            return
        if self._last_pair_ns is not None and stamp_ns <= self._last_pair_ns:
            back_s = (self._last_pair_ns - stamp_ns) * 1e-9
            if back_s <= self.params.reset_backwards_s:
                # A duplicate or reordered frame: dropping it keeps the keyframes.
                self.health.problem(
                    "not_after_previous_dropped",
                    f"{self.params.cam0_topic}: pair at {stamp_ns} ns is {back_s:.3f} s "
                    f"before or at the previous "
                    f"{self._last_pair_ns} ns (reset_backwards_s="
                    f"{self.params.reset_backwards_s!r}): dropped",
                )
                return
            self.health.problem(
                "resets",
                f"stamp {stamp_ns} ns is {back_s:.3f} s before {self._last_pair_ns} ns "
                f"(> reset_backwards_s={self.params.reset_backwards_s!r}): resetting",
            )
            reset = getattr(self.frontend, "reset", None)
            if callable(reset):
                reset("time went back")
        self._last_pair_ns = stamp_ns
        self.health.counters["pairs_processed"] += 1
        prior = self._prior(stamp_ns)
        if prior is None and self.params.odom_topic:
            newest = self.priors.newest_odometry_ns
            self.health.problem(
                "pairs_without_prior",
                f"pair at {stamp_ns} ns: no {self.params.odom_topic} within prior_tolerance_s "
                f"{self.params.prior_tolerance_s:g} s after waiting up to prior_wait_s "
                f"{self.params.prior_wait_s:g} s ("
                + (f"newest odometry stamp {newest}); " if newest is not None else
                   "none has come yet: the odometry starts after its gravity "
                   "initialisation); ")
                + ("no /slam/pose for it" if self.stereo else "its pose from the two views "
                   "only if no odometry came since the start, else no /slam/pose"))
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            keyframe = self.frontend.process(stamp_ns, image0, image1, prior)
        except SlamError as exc:
            self.health.problem("bad_pair", f"pair at {stamp_ns} ns: {exc}")
            return
        if keyframe is None:
            self.health.latency["frame"].add(time.perf_counter() - start)
            return
        self._publish(keyframe)
        wall_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
        # The headline figure is per keyframe (the work); skipped frames are timed apart.
        self.health.latency["keyframe"].add(wall_s)
        # The process's CPU time beside wall time (torch's threads included): with one torch
        # thread, the difference is time spent waiting for a core (on 2 cores behind vio_node
        # at SCHED_FIFO, this node being niced); with more, CPU time can exceed wall time.
        self.health.latency["keyframe_cpu"].add(cpu_s)
        self.get_logger().debug(
            f"keyframe at {stamp_ns} ns: {keyframe.iterations} {keyframe.solver} iterations, "
            f"{wall_s * 1e3:.1f} ms ({cpu_s * 1e3:.1f} ms CPU)")

    def _publish(self, keyframe: Any) -> None:
        p = self.params
        stamp_ns = int(keyframe.stamp_ns)
        depth = np.asarray(keyframe.depth_m, dtype=np.float32)
        frame = self._info["cam0"].header.frame_id or "cam0"
        if not keyframe.depth_supported:
            # All NaN: the single-image guess is no measurement (a tester's black right
            # camera gave 74 % valid depth, as a real pair does); the governor reads no
            # depth as an obstacle at its minimum, so this fails safe.
            self.health.problem(
                "depth_unsupported",
                f"keyframe at {stamp_ns} ns: depth published as NaN: "
                f"{keyframe.unsupported_reason}")
        self.depth_pub.publish(array_to_image(depth, "32FC1", stamp_ns, frame))
        # A stereo keyframe without odometry has no pose of its own (pose_source "none"):
        # publishing the last one known under a fresh stamp is a wrong pose, not a pose.
        if keyframe.pose_source != "none":
            frame_id = self._odom_frame if keyframe.pose_source == "prior" else p.world_frame
            self.pose_pub.publish(pose_stamped_msg(stamp_ns, keyframe.T_world_cam, frame_id))
            self.health.counters["poses_published"] += 1
        self.points_pub.publish(point_cloud_xyz_msg(keyframe.points_cam, stamp_ns, frame))
        self.health.counters["keyframes_published"] += 1

    def summary(self) -> dict[str, object]:
        return self.health.summary()

    def close(self) -> None:
        self.health.publish(final=True)
        self.get_logger().info(f"slam_node done: {self.summary()}")


def main(args: Sequence[str] | None = None) -> int:
    return spin_node(SlamNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
