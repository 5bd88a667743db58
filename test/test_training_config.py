"""`--set key=value` options: typed, unknown keys and bad values refused with their names."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from meetup_ros.training.config import parse_options


@dataclass(frozen=True)
class _Options:
    steps: int = 3
    scale: float = 1.0
    flip: bool = False
    name: str = "a"


def test_values_take_their_field_types() -> None:
    options = parse_options(
        _Options, {"steps": "7", "scale": "0.5", "flip": "true", "name": "b"}, owner="toy"
    )
    assert options == _Options(steps=7, scale=0.5, flip=True, name="b")
    assert parse_options(_Options, {}, owner="toy") == _Options()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"step": "3"}, r"unknown toy option\(s\) \['step'\]; known: \['flip', 'name'"),
        ({"steps": "3.5"}, r"toy option steps='3.5' is not of type int"),
        ({"scale": "fast"}, r"toy option scale='fast' is not of type float"),
        ({"flip": "yes"}, r"toy option flip='yes' is not of type bool"),
    ],
)
def test_bad_options_name_the_key_and_value(extra: dict[str, str], message: str) -> None:
    class ToyError(Exception):
        pass

    with pytest.raises(ToyError, match=message):
        parse_options(_Options, extra, owner="toy", error=ToyError)
