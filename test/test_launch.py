"""Launch files: run with launch_pytest where installed; always checked against setup.py
and config/ (executables, node names, params file, and every node's declared parameters)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

from meetup_ros.cli.run import PIPELINE_NODES, node_class
from meetup_ros.ros.params import build_params, load_params_file

REPO_ROOT = Path(__file__).resolve().parent.parent
LAUNCH_DIR = REPO_ROOT / "launch"
PIPELINE_LAUNCH = LAUNCH_DIR / "pipeline.launch.py"
REPLAY_LAUNCH = LAUNCH_DIR / "replay.launch.py"


def _constants(path: Path) -> dict[str, object]:
    """Module-level constant assignments of a launch file, read without importing launch."""
    tree = ast.parse(path.read_text())
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    out[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return out


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    nodes: tuple[str, ...] = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            nodes = ast.literal_eval(node.value)
    return {name: f"meetup_ros.nodes.{name}:main" for name in nodes}


def test_launch_nodes_match_setup_and_runner() -> None:
    constants = _constants(PIPELINE_LAUNCH)
    launched = constants["NODES"]
    scripts = _console_scripts()
    assert isinstance(launched, tuple)
    missing = [name for name in launched if name not in scripts]
    assert not missing, f"launched nodes without a console script in setup.py: {missing}"
    assert set(launched) == set(PIPELINE_NODES), "launch file and `meetup-ros run` differ"
    for name in launched:
        module = importlib.import_module(f"meetup_ros.nodes.{name}")
        assert callable(module.main)
    assert constants["PACKAGE"] == "meetup_ros"
    assert (REPO_ROOT / "config" / str(constants["PARAMS_FILE"])).is_file()
    replay = _constants(REPLAY_LAUNCH)
    assert (REPO_ROOT / "data" / str(replay["DEFAULT_BAG"]) / "metadata.yaml").is_file()


@pytest.mark.parametrize("params_file", ["pipeline.yaml", "safety_monitor_acasxu.yaml"])
def test_config_parameters_are_declared(params_file: str) -> None:
    """Every key in config/ is a parameter the node declares, with the declared type."""
    sections = load_params_file(REPO_ROOT / "config" / params_file)
    common = sections.pop("/**", {})
    assert set(sections) <= set(PIPELINE_NODES)
    for name, values in sections.items():
        module = importlib.import_module(node_class(name).__module__)
        params_cls = next(
            obj for attr, obj in vars(module).items()
            if attr.endswith("Params") and isinstance(obj, type)
        )
        build_params(params_cls, {**common, **values}, f"{params_file}: {name}")


SKIP_REASON = (
    "launch_pytest/launch_ros are not installed (no ROS 2 install: the PyPI wheels do not ship "
    "them); `meetup-ros run` starts the same nodes with the same YAML, and test_nodes.py and "
    "test_demo.py exercise them"
)
HAVE_LAUNCH = all(
    importlib.util.find_spec(name) is not None
    for name in ("launch_pytest", "launch_ros", "launch.actions")
)

if HAVE_LAUNCH:
    import launch_pytest
    from launch.launch_description import LaunchDescription
    from launch_pytest.tools import process as process_tools
    from launch_ros.actions import Node as LaunchNode

    def _pipeline_entities() -> list[object]:
        spec = importlib.util.spec_from_file_location("pipeline_launch", PIPELINE_LAUNCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return list(module.generate_launch_description().entities)

    PIPELINE_ENTITIES = _pipeline_entities()
    LAUNCHED_NODES = [e for e in PIPELINE_ENTITIES if isinstance(e, LaunchNode)]

    @launch_pytest.fixture
    def pipeline_launch() -> LaunchDescription:
        return LaunchDescription([*PIPELINE_ENTITIES, launch_pytest.actions.ReadyToTest()])

    @pytest.mark.launch(fixture=pipeline_launch)
    async def test_launch_files_run_with_launch_pytest(launch_context: object) -> None:
        assert len(LAUNCHED_NODES) == len(PIPELINE_NODES)
        for node in LAUNCHED_NODES:
            await process_tools.wait_for_start(launch_context, node, timeout=30)

else:

    def test_launch_files_run_with_launch_pytest() -> None:
        pytest.skip(SKIP_REASON)
