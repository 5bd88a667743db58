"""slam_node against bad camera_info and out-of-range parameters. Real nodes over DDS (loopback
only), with the harness of test_nodes.py."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CameraInfo, Image
from test_nodes import BAG, STAMP0_NS, Harness, _overrides

from meetup_ros.ros import convert as cv

pytestmark = pytest.mark.dds

EUROC_T0 = (
    0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
    0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
    -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949,
    0.0, 0.0, 0.0, 1.0,
)


def _with(values: tuple[float, ...], **changes: float) -> list[float]:
    out = list(values)
    for key, value in changes.items():
        out[int(key[1:])] = value
    return out


def _scaled_rotation(values: tuple[float, ...], scale: float) -> list[float]:
    out = list(values)
    for i in (0, 1, 2, 4, 5, 6, 8, 9, 10):
        out[i] *= scale
    return out


@pytest.mark.parametrize(("name", "value"), [
    ("T_base_cam0", _with(EUROC_T0, i5=math.nan)),
    ("T_base_cam1", _scaled_rotation(EUROC_T0, 2.0)),
    ("T_base_cam0", _with(EUROC_T0, i15=2.0)),
    ("T_base_cam1", list(EUROC_T0)),  # cam1 = cam0: no baseline
    ("T_base_cam0", list(EUROC_T0[:12])),
    ("max_pending", 0),
    ("pair_tolerance_s", -1.0),
    ("keyframe_translation_m", -0.1),
    ("keyframe_interval_s", math.nan),
    ("prior_tolerance_s", math.nan),
    ("reset_backwards_s", math.inf),
    ("reset_backwards_s", 0.0),
    ("torch_threads", -3),
    ("iterations", 0),
    ("tolerance", -0.001),
    ("tolerance", 1.0),
    ("tolerance", math.nan),
    ("keyframe_every_n", 0),
    ("keyframe_rotation_rad", -0.1),
    ("keyframe_rotation_rad", 4.0),
    ("diagnostics_period_s", -1.0),
    ("nice_increment", 20),
    ("solver", "newton"),
    ("optimizer_weights", ""),
    ("cam0_info_topic", ""),
    ("pair_tolerance_s", 1e300),  # crashed on the first image, naming nothing
    ("prior_wait_s", -0.1),
    ("sensor_reliability", "sometimes"),
    ("min_two_view_support", 1.0),
    ("max_stereo_rotation_deg", 0.0),
])
def test_slam_node_refuses_out_of_range_parameters_at_start_up(
    harness: Harness, name: str, value: Any
) -> None:
    from meetup_ros.nodes.slam_node import SlamNode
    from meetup_ros.ros import RosInputError

    shown = repr(tuple(value) if isinstance(value, list) else value)
    with pytest.raises(RosInputError, match=rf"^{name} {re.escape(shown)}: expected "):
        SlamNode(context=harness.context, parameter_overrides=_overrides(**{name: value}))


def _camera_info_msg(info: Any, **k_or_d: float) -> CameraInfo:
    msg = CameraInfo()
    msg.header.frame_id = info.frame_id
    msg.width, msg.height = int(info.width), int(info.height)
    msg.distortion_model = info.distortion_model
    k = [float(x) for x in np.asarray(info.K).reshape(-1)]
    d = [float(x) for x in info.dist]
    for key, value in k_or_d.items():
        (k if key[0] == "k" else d)[int(key[1:])] = value
    msg.k, msg.d = k, d
    return msg


def test_slam_node_refuses_bad_camera_info_and_waits_for_a_good_one(harness: Harness) -> None:
    """A camera_info with cx = NaN was kept for good ("frontend ready", depth images with no
    valid pixel); each bad one must be refused naming the topic and the entry, frames must
    say which camera_info they wait for, and a good camera_info must then be taken."""
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.nodes.slam_node import SlamNode

    seq = read_sequence(BAG)
    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="")))
    counters = node.health.counters
    h, w = int(seq.cam0.info.height), int(seq.cam0.info.width)

    def pair(stamp_ns: int) -> None:
        image = np.zeros((h, w), np.uint8)
        harness.publish("/cam0/image_raw", cv.array_to_image(image, "mono8", stamp_ns, "cam0"))
        harness.publish("/cam1/image_raw", cv.array_to_image(image, "mono8", stamp_ns, "cam1"))

    pair(STAMP0_NS)
    harness.wait_for(lambda: counters["waiting_for_camera_info"] == 1, 10, "a dropped pair")
    assert "camera_info on /cam0/camera_info, /cam1/camera_info: dropped" in (
        node.health.last_problem)

    harness.publish("/cam1/camera_info", _camera_info_msg(seq.cam1.info))
    harness.wait_for(lambda: "cam1" in node._info, 10, "cam1's camera_info")
    bad = [
        ({"k2": math.nan}, "K[2] (cx) nan: expected finite"),
        ({"k8": math.inf}, "K[8] inf: expected finite"),
        ({"k0": 0.0}, "K[0] (fx) 0.0: expected a focal length > 0"),
        ({"k4": -450.0}, "K[4] (fy) -450.0: expected a focal length > 0"),
        ({"k5": 5000.0}, f"K[5] (cy) 5000.0: expected a principal point in the {w} x {h} "),
        ({"k2": -3.0 * w}, f"K[2] (cx) {-3.0 * w!r}: expected a principal point"),
        ({"k3": 1.0}, "expected [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]"),
        ({"k1": 40.0}, "K[1] (skew) 40.0: expected 0 (no skew is modelled)"),
        ({"d1": math.nan}, "D[1] nan: expected finite"),
    ]
    for i, (change, message) in enumerate(bad, start=1):
        harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info, **change))
        harness.wait_for(lambda i=i: counters["bad_camera_info"] == i, 10, f"refusal {change}")
        assert node.health.last_problem.startswith("cam0 /cam0/camera_info: ")
        assert message in node.health.last_problem
        assert node.frontend is None and "cam0" not in node._info

    # a model the rectification does not have, and a k3 it would drop
    fisheye = _camera_info_msg(seq.cam0.info)
    fisheye.distortion_model = "equidistant"
    with_k3 = _camera_info_msg(seq.cam0.info)
    with_k3.d = [*with_k3.d, 0.05]
    for msg, message in ((fisheye, "distortion_model 'equidistant': expected plumb_bob"),
                         (with_k3, "expected k3 and beyond 0")):
        bad.append(({}, message))
        refused = len(bad)
        harness.publish("/cam0/camera_info", msg)
        harness.wait_for(lambda n=refused: counters["bad_camera_info"] == n, 10, message)
        assert message in node.health.last_problem and node.frontend is None

    pair(STAMP0_NS + 50_000_000)
    harness.wait_for(lambda: counters["waiting_for_camera_info"] == 2, 10, "a dropped pair")
    assert "camera_info on /cam0/camera_info: dropped" in node.health.last_problem

    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
    harness.wait_for(lambda: node.frontend is not None, 60, "the frontend")
    assert counters["bad_camera_info"] == len(bad)


def test_images_lost_before_the_callback_are_counted(harness: Harness) -> None:
    """A reliable KEEP_LAST subscription drops its oldest samples when the callback falls
    behind, without a word (a tester's slam_node lost 5 of 95 pairs while busy): with the
    executor held for a second, 60 more images sent than the queue holds, the node counts
    exactly those it never got."""
    import threading
    import time

    from meetup_ros.nodes.slam_node import IMAGE_QUEUE_DEPTH, SlamNode

    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="", cam1_topic="")))
    image = np.zeros((24, 32), np.uint8)
    harness.publish("/cam0/image_raw", cv.array_to_image(image, "mono8", STAMP0_NS, "cam0"))
    counters = node.health.counters
    harness.wait_for(lambda: counters["waiting_for_camera_info"] == 1, 10, "the first image")
    release = threading.Event()
    harness.driver.create_timer(0.01, lambda: release.wait(5.0) if not release.is_set() else None)
    time.sleep(0.3)  # the executor is now inside the blocking timer
    sent = IMAGE_QUEUE_DEPTH + 60
    for i in range(1, sent + 1):
        harness.publish("/cam0/image_raw",
                        cv.array_to_image(image, "mono8", STAMP0_NS + i * 50_000_000, "cam0"))
    time.sleep(1.0)
    release.set()
    harness.wait_for(lambda: counters["waiting_for_camera_info"]
                     + counters["messages_lost_in_transport"] == sent + 1, 10,
                     "every image accounted")
    assert counters["messages_lost_in_transport"] >= 60  # at most IMAGE_QUEUE_DEPTH held
    assert counters["transport_losses"] >= 1


def test_a_calibration_that_changes_and_holds_is_taken(harness: Harness) -> None:
    """A first camera_info of the wrong size (752 x 480 for 376 x 240 images) was kept for
    good and every frame dropped; a corrected one that holds for 20 messages is now taken,
    the frontend rebuilt, and frames go through. One odd message changes nothing."""
    import time

    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.nodes.slam_node import INFO_CHANGE_MESSAGES, SlamNode

    seq = read_sequence(BAG)
    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="")))
    counters = node.health.counters
    wrong = {}
    for cam, info in (("cam0", seq.cam0.info), ("cam1", seq.cam1.info)):
        msg = _camera_info_msg(info, k0=2 * info.K[0, 0], k2=2 * info.K[0, 2] + 0.5,
                               k4=2 * info.K[1, 1], k5=2 * info.K[1, 2] + 0.5)
        msg.width, msg.height = 2 * int(info.width), 2 * int(info.height)
        wrong[cam] = msg
        harness.publish(f"/{cam}/camera_info", msg)
    harness.wait_for(lambda: node.frontend is not None, 20, "a frontend on the wrong size")

    def pair(k: int) -> None:
        stamp_ns = int(seq.cam0.stamps_ns[k])
        harness.publish("/cam0/image_raw",
                        cv.array_to_image(seq.cam0.images[k], "mono8", stamp_ns, "cam0"))
        harness.publish("/cam1/image_raw",
                        cv.array_to_image(seq.cam1.images[k], "mono8", stamp_ns, "cam1"))

    pair(0)
    harness.wait_for(lambda: counters["bad_image"] >= 2, 10, "frames refused by size")
    # one odd message: nothing changes, but it is said (a tester's 15 were not)
    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
    harness.wait_for(lambda: counters["camera_info_disagrees"] == 1, 10, "the disagreement")
    assert "taken only if it holds for 20 messages" in node.health.last_problem
    harness.publish("/cam0/camera_info", wrong["cam0"])
    for _ in range(INFO_CHANGE_MESSAGES):  # at a camera's rate, not a burst (queue of 5)
        harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
        harness.publish("/cam1/camera_info", _camera_info_msg(seq.cam1.info))
        time.sleep(0.02)
    harness.wait_for(lambda: counters["camera_info_changes"] == 2, 20, "both calibrations taken")
    harness.wait_for(lambda: node.frontend is not None, 20, "the frontend rebuilt")
    assert node._hw == {"cam0": (240, 376), "cam1": (240, 376)}
    bad_before = counters["bad_image"]
    for k in range(1, 4):
        pair(k)
    harness.wait_for(lambda: counters["pairs_processed"] == 3, 20, "frames processed")
    assert counters["bad_image"] == bad_before


def test_best_effort_cameras_are_heard_with_best_effort_subscriptions(harness: Harness) -> None:
    """Camera and IMU drivers often publish best effort (the sensor-data profile), which a
    reliable subscription never matches: a tester's best-effort camera fed slam_node nothing.
    With sensor_reliability 'best_effort' slam_node and vio_node take such publishers."""
    import time

    from rclpy.qos import ReliabilityPolicy
    from sensor_msgs.msg import Image, Imu

    from meetup_ros.nodes.slam_node import SlamNode
    from meetup_ros.nodes.vio_node import VioNode
    from meetup_ros.ros.node_tools import reliable_qos

    slam = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="", cam1_topic="", sensor_reliability="best_effort")))
    vio = harness.add(VioNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, sensor_reliability="best_effort")))
    qos = reliable_qos(10)
    qos.reliability = ReliabilityPolicy.BEST_EFFORT
    image_pub = harness.driver.create_publisher(Image, "/cam0/image_raw", qos)
    imu_pub = harness.driver.create_publisher(Imu, "/imu0", qos)
    harness.wait_for(lambda: image_pub.get_subscription_count() == 2
                     and imu_pub.get_subscription_count() == 1, 10, "best-effort matches")
    for i in range(5):
        stamp_ns = STAMP0_NS + i * 50_000_000
        image_pub.publish(cv.array_to_image(np.zeros((24, 32), np.uint8), "mono8", stamp_ns,
                                            "cam0"))
        imu = Imu()
        imu.header.stamp = cv.ns_to_stamp(stamp_ns)
        imu.linear_acceleration.z = 9.81
        imu_pub.publish(imu)
        time.sleep(0.02)
    harness.wait_for(lambda: slam.health.counters["waiting_for_camera_info"] >= 1, 10,
                     "slam_node hears the camera")
    harness.wait_for(lambda: vio.health.counters["imu_accepted"] >= 1, 10,
                     "vio_node hears the IMU")


def test_an_unpaired_frame_names_its_nearest_partner(harness: Harness) -> None:
    """Stereo stamps 5 ms apart (tolerance 3 ms): every frame was dropped with only "no
    partner"; the message now gives the nearest partner's offset and the tolerance."""
    from meetup_ros.nodes.slam_node import SlamNode

    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="", max_pending=2)))
    image = np.zeros((24, 32), np.uint8)
    for i in range(4):
        stamp_ns = STAMP0_NS + i * 50_000_000
        harness.publish("/cam0/image_raw", cv.array_to_image(image, "mono8", stamp_ns, "cam0"))
        harness.publish("/cam1/image_raw",
                        cv.array_to_image(image, "mono8", stamp_ns + 5_000_000, "cam1"))
    harness.wait_for(lambda: node.health.counters["unpaired_dropped"] >= 2, 10, "drops")
    assert "within pair_tolerance_s 0.003 s" in node.health.last_problem
    assert "us" in node.health.last_problem and "5000.0 us" in node.health.last_problem


def test_an_incompatible_best_effort_camera_is_named_with_its_fix(harness: Harness) -> None:
    """With the default reliable subscription a best-effort camera is never matched; rmw's
    warning named only the policy. The node now says it, with sensor_reliability."""
    from rclpy.qos import ReliabilityPolicy
    from sensor_msgs.msg import Image

    from meetup_ros.nodes.slam_node import SlamNode
    from meetup_ros.ros.node_tools import reliable_qos

    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="", cam1_topic="")))
    qos = reliable_qos(10)
    qos.reliability = ReliabilityPolicy.BEST_EFFORT
    harness.driver.create_publisher(Image, "/cam0/image_raw", qos)
    harness.wait_for(lambda: node.health.counters["incompatible_publishers"] >= 1, 10,
                     "the incompatibility said")
    assert "/cam0/image_raw: a publisher's QoS is incompatible" in node.health.last_problem
    assert "sensor_reliability: best_effort" in node.health.last_problem


def test_a_dead_right_camera_gives_nan_depth_and_says_why(harness: Harness) -> None:
    """A black cam1 gave 74 % valid depth on /depth (the decoder's single-image guess), the
    same as a real pair: now all NaN, an empty cloud, counted and said."""
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.nodes.slam_node import SlamNode

    seq = read_sequence(BAG)
    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="", keyframe_every_n=1)))
    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
    harness.publish("/cam1/camera_info", _camera_info_msg(seq.cam1.info))
    harness.wait_for(lambda: node.frontend is not None, 60, "the frontend")
    harness.collect("/depth", Image)
    for i, right in enumerate((seq.cam1.images[80], np.zeros_like(seq.cam1.images[80]))):
        stamp_ns = STAMP0_NS + i * 50_000_000
        harness.publish("/cam0/image_raw",
                        cv.array_to_image(seq.cam0.images[80], "mono8", stamp_ns, "cam0"))
        harness.publish("/cam1/image_raw", cv.array_to_image(right, "mono8", stamp_ns, "cam1"))
        harness.wait_for(lambda i=i: harness.count("/depth") == i + 1, 30, f"depth {i}")
    real, dead = (cv.image_to_array(m, encodings=("32FC1",))
                  for m in harness.received["/depth"][:2])
    assert np.isfinite(real).mean() > 0.5
    assert not np.isfinite(dead).any()
    assert node.health.counters["depth_unsupported"] == 1
    assert "depth published as NaN: an image of the pair is flat" in node.health.last_problem
