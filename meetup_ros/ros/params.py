"""Typed node parameters: a dataclass declares them, a ROS params YAML sets them.

A node's parameters are one frozen dataclass whose fields are made with :func:`param`
(default and description). :func:`declare_parameters` declares every field on the node with
its description, reads the values back with type checks, and rejects keys given to the node
(``--params-file`` or ``parameter_overrides``) that no field declares, so a misspelt key in
``config/*.yaml`` stops the node instead of passing silently.

:func:`load_params_file` reads the ROS params YAML format (``node_name: ros__parameters:
{...}``) for the pip-only runner, which has no ``launch`` to do it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from meetup_ros.ros import RosInputError

T = TypeVar("T")

# Keys rclpy or the launch system set on every node; never rejected as unknown.
_FRAMEWORK_KEYS = ("use_sim_time", "start_type_description_service")
_FRAMEWORK_PREFIXES = ("qos_overrides.",)


def param(default: Any, description: str) -> Any:
    """A dataclass field for a node parameter with a default and a description."""
    if isinstance(default, list):
        raise TypeError("list parameters take a tuple default and a tuple[...] annotation")
    return dataclasses.field(default=default, metadata={"description": description})


def _kind(annotation: Any) -> str:
    """``float``/``int``/``str``/``bool`` or ``list[...]`` of them, as a short name."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1]
        return f"list[{item.__name__}]"
    if isinstance(annotation, type):
        return annotation.__name__
    if isinstance(annotation, types.UnionType):
        raise TypeError(f"optional parameter types are not supported: {annotation!r}")
    raise TypeError(f"unsupported parameter type {annotation!r}")


def _coerce(kind: str, value: Any, where: str) -> Any:
    """Check ``value`` against ``kind``; ints are accepted where floats are declared."""
    def scalar(item_kind: str, item: Any) -> Any:
        if item_kind == "float" and isinstance(item, int | float) and not isinstance(item, bool):
            return float(item)
        if item_kind == "int" and isinstance(item, int) and not isinstance(item, bool):
            return int(item)
        if item_kind == "bool" and isinstance(item, bool):
            return item
        if item_kind == "str" and isinstance(item, str):
            return item
        raise RosInputError(f"{where}: value {value!r} is not of type {kind}")

    if kind.startswith("list["):
        if not isinstance(value, list | tuple):
            raise RosInputError(f"{where}: value {value!r} is not of type {kind}")
        return tuple(scalar(kind[5:-1], item) for item in value)
    return scalar(kind, value)


def param_fields(cls: type) -> dict[str, tuple[str, Any, str]]:
    """``{name: (kind, default, description)}`` for a parameters dataclass."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[str, Any, str]] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"parameter {f.name!r} of {cls.__name__} has no default")
        out[f.name] = (_kind(hints[f.name]), default, str(f.metadata.get("description", "")))
    return out


def build_params(cls: type[T], values: Mapping[str, Any], source: str) -> T:
    """An instance of ``cls`` from ``values`` (missing keys take defaults).

    Raises:
        RosInputError: a key no field declares, or a value of the wrong type; the message
            names ``source`` (a file and node, or a node).
    """
    fields = param_fields(cls)
    unknown = sorted(
        k for k in values
        if k not in fields and k not in _FRAMEWORK_KEYS and not k.startswith(_FRAMEWORK_PREFIXES)
    )
    if unknown:
        raise RosInputError(
            f"{source}: unknown parameter(s) {unknown!r}; this node declares {sorted(fields)!r}"
        )
    kwargs = {
        name: _coerce(kind, values[name], f"{source}: parameter {name!r}")
        for name, (kind, _default, _doc) in fields.items()
        if name in values
    }
    return cls(**kwargs)


_ROS_TYPES = {
    "float": 3, "int": 2, "str": 4, "bool": 1,  # rcl_interfaces/ParameterType constants
    "list[float]": 8, "list[int]": 7, "list[str]": 9, "list[bool]": 6,
}


def declare_parameters(node: Any, cls: type[T]) -> T:
    """Declare every field of ``cls`` on ``node`` and return the values it was given.

    Raises:
        RosInputError: the node was given a key ``cls`` does not declare, or a bad value.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    fields = param_fields(cls)
    values: dict[str, Any] = {}
    for name, (kind, default, description) in fields.items():
        descriptor = ParameterDescriptor(
            name=name,
            type=_ROS_TYPES[kind],
            description=f"{description} [{kind}]",
            # The YAML may write 1 for 1.0; the type is checked below against the dataclass.
            dynamic_typing=True,
        )
        ros_default = list(default) if isinstance(default, tuple) else default
        value = node.declare_parameter(name, ros_default, descriptor).value
        if value is None and kind.startswith("list["):
            # rcl gives an empty list (`key: []`) no type, and rclpy reads it back as None
            # (a YAML null is refused by rcl's parser): the node's own checks say whether
            # an empty list will do ("value None is not of type list[str]" named no problem)
            value = ()
        values[name] = value
    source = f"node {node.get_name()!r}"
    # rclpy keeps what --params-file and parameter_overrides gave the node here; a key that
    # no field declares is a typo or a stale config, so refuse it rather than ignore it.
    given = getattr(node, "_parameter_overrides", None) or {}
    unknown = sorted(
        k for k in given
        if k not in fields and k not in _FRAMEWORK_KEYS and not k.startswith(_FRAMEWORK_PREFIXES)
    )
    if unknown:
        raise RosInputError(
            f"{source}: unknown parameter(s) {unknown!r}; this node declares {sorted(fields)!r}"
        )
    params = build_params(cls, values, source)
    # Topic names as the node resolves them: a relative one (the shipped defaults and files)
    # is the node's namespace's, and messages and logs then name the topic really used.
    resolved = {
        name: node.resolve_topic_name(getattr(params, name))
        for name in fields
        if name.endswith("_topic") and getattr(params, name)
    }
    if not resolved:
        return params
    return dataclasses.replace(params, **resolved)  # type: ignore[type-var]


def params_to_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params)


# ---- the ROS params YAML format -------------------------------------------------------------

def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    # ROS params files nest namespaces as mappings; the parameter name joins them with dots.
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def load_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 params YAML: ``{node_name: {parameter: value}}``.

    Accepts ``node_name``, ``/node_name``, ``/**/node_name`` and ``/**`` (all nodes) as
    top-level keys (:func:`section_node_name`), each with
    a ``ros__parameters`` mapping; nested mappings become dotted names.

    Raises:
        RosInputError: missing or unreadable file, or a structure other than the above.
    """
    return params_sections(read_params_document(path), path)


def read_params_document(path: str | Path) -> Mapping[Any, Any]:
    """The params file as YAML, its top level checked to be a mapping.

    Raises:
        RosInputError: missing or unreadable file, not YAML, or another top level.
    """
    path = Path(path)
    if path.is_dir():  # was "does not exist" (a tester's)
        raise RosInputError(f"params file {str(path)!r} is a folder; expected a YAML file")
    if not path.is_file():
        raise RosInputError(f"params file {str(path)!r} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RosInputError(f"params file {str(path)!r} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RosInputError(f"params file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise RosInputError(
            f"params file {str(path)!r}: top level is {type(document).__name__}, expected a "
            "mapping of node names"
        )
    return document


def params_sections(document: Mapping[Any, Any], path: str | Path) -> dict[str, dict[str, Any]]:
    """``{node_name: {parameter: value}}`` of a document read by :func:`read_params_document`.

    Raises:
        RosInputError: a section other than one ``ros__parameters`` mapping.
    """
    out: dict[str, dict[str, Any]] = {}
    for node_name, section in document.items():
        if not isinstance(section, Mapping) or set(section) != {"ros__parameters"}:
            keys = sorted(section) if isinstance(section, Mapping) else section
            raise RosInputError(
                f"params file {str(path)!r}: node {node_name!r} has {keys!r}, expected exactly "
                "one key 'ros__parameters'"
            )
        parameters = section["ros__parameters"] or {}
        if not isinstance(parameters, Mapping):
            raise RosInputError(
                f"params file {str(path)!r}: {node_name!r}.ros__parameters is "
                f"{parameters!r}, expected a mapping"
            )
        flat: dict[str, Any] = {}
        _flatten("", parameters, flat)
        out.setdefault(section_node_name(node_name), {}).update(flat)
    return out


def section_node_name(section: object) -> str:
    """The node a params file's top-level key is for: ``/**`` (every node) as is; ``name``,
    ``/name`` and ``/**/name`` (``name`` in any namespace, as the shipped files write it, so
    that a namespaced launch still gets its section) as ``name``."""
    key = str(section)
    if key == "/**":
        return key
    if key.startswith("/**/"):
        key = key[len("/**/"):]
    return key.lstrip("/")


def node_params_from_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The parameters a params file gives ``node_name`` (its own section over ``/**``)."""
    return node_params(load_params_file(path), node_name)


def node_params(sections: Mapping[str, Mapping[str, Any]], node_name: str) -> dict[str, Any]:
    """What ``sections`` (:func:`params_sections`) give ``node_name``: its own over ``/**``."""
    return {**sections.get("/**", {}), **sections.get(node_name, {})}


def state_axes_param(forward_axis_base: Any, up_axis_base: Any) -> Any:
    """The nodes' ``forward_axis_base`` / ``up_axis_base`` as checked ``StateAxes`` (a zero,
    NaN or parallel axis refused at start-up, naming both, not on the first message).

    Raises:
        RosInputError: axes that give no orthonormal frame.
    """
    from meetup_ros.control import ControlError
    from meetup_ros.control.state import StateAxes

    axes = StateAxes(tuple(forward_axis_base), tuple(up_axis_base))
    try:
        axes.matrix()
    except ControlError as exc:
        raise RosInputError(f"forward_axis_base {forward_axis_base!r}, up_axis_base "
                            f"{up_axis_base!r}: {exc}") from None
    return axes


def check_param(params: Any, ok: bool, name: str, expected: str) -> None:
    """Refuse a parameter value at start-up: ``"<name> <value>: expected <expected>"``.

    Raises:
        RosInputError: when not ``ok``.
    """
    if not ok:
        raise RosInputError(f"{name} {getattr(params, name)!r}: expected {expected}")
