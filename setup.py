"""ament_python package: ROS 2 nodes plus the `meetup-ros` offline command."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "meetup_ros"

NODES = ("vio_node", "slam_node", "controller_node", "safety_monitor_node", "bag_replay_node")

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.vnnlib")),
        (f"share/{PACKAGE}/models", glob("models/*")),
        (f"share/{PACKAGE}/data", ["data/README.md"]),
        (f"share/{PACKAGE}/data/euroc_v1_01_easy_sample", glob("data/euroc_v1_01_easy_sample/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="meetup_ros maintainers",
    maintainer_email="maintainers@meetup-ros.invalid",
    description="Learned VIO, depth-code SLAM, runtime NN verification and DFW retraining.",
    license="BSD-3-Clause",
    entry_points={
        # through nodes/entry.py: quiet on Ctrl-C while importing, and (where asked) stops
        # when the launcher that started it dies
        "console_scripts": [f"{node} = {PACKAGE}.nodes.entry:{node}" for node in NODES]
        + ["meetup-ros = meetup_ros.cli:main"],
    },
)
