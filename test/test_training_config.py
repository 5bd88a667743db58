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
        ({"steps": "3.5"}, r"toy option --set steps='3.5' is not of type int"),
        ({"scale": "fast"}, r"toy option --set scale='fast' is not of type float"),
        ({"flip": "yes"}, r"toy option --set flip='yes' is not of type bool"),
    ],
)
def test_bad_options_name_the_key_and_value(extra: dict[str, str], message: str) -> None:
    class ToyError(Exception):
        pass

    with pytest.raises(ToyError, match=message):
        parse_options(_Options, extra, owner="toy", error=ToyError)


@pytest.mark.parametrize("text", ["inf", "-inf", "nan"])
def test_float_options_must_be_finite(text: str) -> None:
    """"inf" and "nan" parse as floats; they failed far from the option (a verify timeout of
    inf overflowed inside the verifier after the whole training run)."""
    class ToyError(Exception):
        pass

    with pytest.raises(ToyError, match=rf"toy option --set scale='{text}' is not a finite number"):
        parse_options(_Options, {"scale": text}, owner="toy", error=ToyError)


@pytest.mark.parametrize(("name", "value"), [
    ("lr", float("nan")), ("lr", float("inf")), ("momentum", float("nan")),
    ("momentum", -0.1), ("weight_decay", float("inf")), ("weight_decay", -1.0),
])
def test_train_config_refuses_non_finite_or_negative_hyper_parameters(
        name: str, value: float) -> None:
    from pathlib import Path

    from meetup_ros.training.config import TrainConfig

    with pytest.raises(ValueError, match=rf"{name} must be finite and"):
        TrainConfig(bags=(Path("bag"),), out_dir=Path("out"), **{name: value})


@pytest.mark.parametrize(("setting", "message"), [
    ("synthetic_samples=-1", r"--set synthetic_samples=-1: expected an integer >= 1"),
    ("synthetic_samples=0", r"--set synthetic_samples=0: expected an integer >= 1"),
    ("hidden=0", r"--set hidden=0: expected an integer >= 1"),
    ("depth_pairs=0", r"--set depth_pairs=0: expected an integer >= 1"),
    ("real_rate_hz=0", r"--set real_rate_hz=0.0: expected a rate in \[1e-9, 1e9\] Hz"),
    ("real_rate_hz=1e12", r"--set real_rate_hz=1000000000000.0: expected a rate"),
    ("hinge_smoothing=-0.5", r"--set hinge_smoothing=-0.5: expected a value >= 0"),
    ("hinge_smoothing=inf", r"controller option --set hinge_smoothing='inf' is not a finite"),
    ("verify_timeout_s=inf", r"controller option --set verify_timeout_s='inf' is not a finite"),
    ("verify_timeout_s=-1", r"--set verify_timeout_s=-1.0: expected seconds >= 0"),
    ("holdout_fraction=1", r"--set holdout_fraction=1.0: expected a fraction in \(0, 1\)"),
])
def test_controller_options_are_checked_against_their_ranges(setting: str,
                                                             message: str) -> None:
    from meetup_ros.control import ControlError
    from meetup_ros.control.training import ControllerOptions

    key, _, value = setting.partition("=")
    with pytest.raises(ControlError, match=message):
        ControllerOptions.from_extra({key: value})
    # the edges that mean something are taken
    ControllerOptions.from_extra({"verify_timeout_s": "0", "hinge_smoothing": "0",
                                  "synthetic_samples": "1", "depth_pairs": "1"})


@dataclass(frozen=True)
class _Optional:
    limit: int | None = None
    share: float | None = None


def test_optional_fields_convert_as_their_type() -> None:
    """`mono_share: float | None` was read as a string (its type named no int or float)."""
    assert parse_options(_Optional, {"limit": "4", "share": "0.5"}, owner="toy") == _Optional(
        limit=4, share=0.5)
    assert parse_options(_Optional, {}, owner="toy") == _Optional()
    with pytest.raises(ValueError, match=r"toy option --set share='half' is not of type float"):
        parse_options(_Optional, {"share": "half"}, owner="toy")


def test_check_ranges_names_the_first_key_out_of_range() -> None:
    from meetup_ros.training.config import check_ranges

    options = _Options(steps=0, scale=-1.0)
    with pytest.raises(KeyError, match=r"--set steps=0: expected an integer >= 1"):
        check_ranges(options, (("steps", options.steps >= 1, "an integer >= 1"),
                               ("scale", options.scale >= 0, "a value >= 0")), error=KeyError)
    check_ranges(_Options(), (("steps", True, "never shown"),))


@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay"])
def test_train_config_refuses_hyper_parameters_past_float32(name: str) -> None:
    """`--optimizer adam --lr 1e38` (or sgd 1e300) ended in torch's "value cannot be
    converted to type float without overflow" traceback at the first step."""
    from pathlib import Path

    from meetup_ros.training.config import TrainConfig

    with pytest.raises(ValueError, match=rf"{name} must be at most 3.402823e\+38"):
        TrainConfig(bags=(Path("bag"),), out_dir=Path("out"), **{name: 1e39})
    TrainConfig(bags=(Path("bag"),), out_dir=Path("out"), **{name: 3e38})


def test_every_trainer_takes_the_edges_of_its_ranges() -> None:
    """The range checks refuse nothing that means something."""
    from meetup_ros.odometry.training import VioTrainOptions
    from meetup_ros.slam.training import DepthTrainOptions, StepTrainOptions

    assert VioTrainOptions.from_extra({
        "chunk": "1", "heldout_s": "0", "val_s": "0", "rest_fraction": "0",
        "attitude_noise_deg": "0", "steps_per_epoch": "1", "image_weight": "1e-3",
        "image_dropout": "1", "imu_hidden": "1", "core_hidden": "1", "image_channels": "1",
    }).rest_fraction == 0.0
    assert VioTrainOptions.from_extra({"rest_fraction": "1", "image_dropout": "0"})
    assert DepthTrainOptions.from_extra({"steps": "1", "code_dim": "1", "euroc_stride": "1"})
    step = StepTrainOptions.from_extra({"mono_pairs": "0", "mono_share": "1", "pyramid": "1",
                                        "hidden": "1", "unroll": "1", "euroc_stride": "1"})
    assert step.mono_share == 1.0 and step.pyramid == 1
    assert StepTrainOptions.from_extra({"mono_share": "0"}).mono_share == 0.0
    assert StepTrainOptions.from_extra({}).mono_share is None
