"""Config validation: every field's range, choices and type come from its metadata; errors are one line."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslinspect.config import AugmentConfig, DataConfig, ExportConfig, FewShotConfig, PretrainConfig
from sslinspect.errors import ConfigError

CONFIGS = (DataConfig, AugmentConfig, PretrainConfig, FewShotConfig, ExportConfig)


@pytest.mark.parametrize("cls", CONFIGS)
def test_defaults_are_valid_and_every_field_documented(cls: type) -> None:
    cls()
    for f in dataclasses.fields(cls):
        assert f.metadata.get("label") and f.metadata.get("help"), f.name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PretrainConfig(epochs=0), "pretrain.epochs must be ≥ 1, got 0"),
        (lambda: PretrainConfig(image_size=5000), "pretrain.image_size must be ≤ 1024, got 5000"),
        (lambda: PretrainConfig(device="tpu"), "pretrain.device must be one of auto, cpu, cuda; got 'tpu'"),
        (lambda: PretrainConfig(method="magic"), "pretrain.method must be one of"),
        (lambda: PretrainConfig(lr=math.nan), "pretrain.lr must be a finite number, got nan"),
        (lambda: PretrainConfig(max_minutes=math.inf), "pretrain.max_minutes must be a finite number, got inf"),
        (lambda: PretrainConfig(seed=2**64), "pretrain.seed is too large"),
        (lambda: PretrainConfig(batch_size=None), "pretrain.batch_size must be set, got None"),  # type: ignore[arg-type]
        (lambda: PretrainConfig(epochs="5"), "pretrain.epochs must be a number, got '5'"),  # type: ignore[arg-type]
        (lambda: DataConfig(max_pixels=0), "data.max_pixels must be ≥ 1, got 0"),
        (lambda: AugmentConfig(hue=0.9), "pretrain.augment.hue must be ≤ 0.5, got 0.9"),
        (lambda: FewShotConfig(threshold_percentile=10), "fit.threshold_percentile must be ≥ 50.0, got 10"),
        (lambda: ExportConfig(precision="fp64"), "export.precision must be one of fp32, fp16, int8; got 'fp64'"),
    ],
)
def test_out_of_range_values_give_one_line_config_errors(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _numeric_fields(cls: type) -> list[tuple[str, dict[str, object]]]:
    return [(f.name, dict(f.metadata)) for f in dataclasses.fields(cls) if "min" in f.metadata or "max" in f.metadata]


@settings(max_examples=300, deadline=None)
@given(
    cls=st.sampled_from(CONFIGS),
    pick=st.integers(0, 100),
    value=st.one_of(
        st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none()
    ),
)
def test_any_value_is_accepted_in_range_or_refused_with_config_error(cls: type, pick: int, value: object) -> None:
    fields = _numeric_fields(cls)
    name, meta = fields[pick % len(fields)]
    try:
        cfg = cls(**{name: value})
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    got = getattr(cfg, name)
    assert isinstance(got, (int, float)) and math.isfinite(got)
    assert meta.get("min", -math.inf) <= got <= meta.get("max", math.inf)  # type: ignore[operator]
