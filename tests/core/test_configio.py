"""Config files and ``--set`` overrides: strict parsing, one-line errors, exit code 2 from the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslinspect.cli import main
from sslinspect.config import AugmentConfig, DataConfig, ExportConfig, FewShotConfig, PretrainConfig
from sslinspect.configio import SECTIONS, apply_override, from_dict, load_sections, section_of, to_dict
from sslinspect.errors import ConfigError


def test_config_file_with_bom_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"pretrain": {"epochs": 3, "augment": {"flip": False}}}), encoding="utf-8-sig")
    cfgs = load_sections(path, ["pretrain.augment.hue=0.1", "data.include_hidden=yes", "fit.classifier=logistic"])
    pre = cfgs["pretrain"]
    assert isinstance(pre, PretrainConfig)
    assert (pre.epochs, pre.augment.flip, pre.augment.hue) == (3, False, 0.1)
    assert cfgs["data"] == DataConfig(include_hidden=True)
    assert cfgs["fit"] == FewShotConfig(classifier="logistic")


def test_the_old_train_section_is_read_as_fit(tmp_path: Path) -> None:
    """Config files (and run config.json files) written before the rename name the few-shot section ``train``."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"train": {"knn_k": 3}}), encoding="utf-8")
    cfgs = load_sections(path, ["train.cv_folds=4"])
    assert cfgs["fit"] == FewShotConfig(knn_k=3, cv_folds=4) and "train" not in cfgs
    assert section_of({"train": {"knn_k": 3}, "checkpoint": "x"}, "fit") == {"knn_k": 3}
    assert section_of({"fit": {"knn_k": 4}}, "fit") == {"knn_k": 4} and section_of({}, "fit") is None
    path.write_text(json.dumps({"train": {}, "fit": {}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="the old and the new name"):
        load_sections(path, [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON (line 1: Expecting property name enclosed in double quotes)"),
        ("[]", "the config must be a JSON object of sections"),
        ('{"pretrian": {}}', "unknown section(s) pretrian; known: data, pretrain, fit, export"),
        ('{"pretrain": {"epoch": 3}}', "unknown key(s) in pretrain: epoch"),
        ('{"pretrain": {"epochs": "3"}}', "pretrain.epochs must be int, got '3'"),
        ('{"pretrain": {"epochs": 3.0}}', "pretrain.epochs must be int, got 3.0"),
        ('{"pretrain": {"amp": 1}}', "pretrain.amp must be bool, got 1"),
        ('{"pretrain": {"lr": NaN}}', "pretrain.lr must be a finite number, got nan"),
        ('{"pretrain": {"augment": 3}}', "pretrain.augment must be a JSON object, got int"),
        ('{"export": {"opset": 99}}', "export.opset must be ≤ 23, got 99"),
        ('{"data": {"max_file_mb": 1e999}}', "data.max_file_mb must be a finite number, got inf"),
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_sections(path, [])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_sections(tmp_path / "none.json", [])
    (tmp_path / "latin.json").write_bytes(b'{"pretrain": {"weights": "\xe9"}}')
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_sections(tmp_path / "latin.json", [])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pretrain.epochs", "--set expects section.field=value"),
        ("model.epochs=3", "--set expects section.field=value with section in data, pretrain, fit, export"),
        ("pretrain.nope=1", "unknown config key 'nope'"),
        ("pretrain.epochs.x=1", "unknown config key 'epochs.x'"),
        ("pretrain.augment.nope=1", "unknown config key 'nope'"),
        ("pretrain.epochs=ten", "epochs must be an integer, got 'ten'"),
        ("pretrain.amp=maybe", "amp must be true or false, got 'maybe'"),
        ("pretrain.lr=1e999", "pretrain.lr must be a finite number, got inf"),
        ("pretrain.temperature=nan", "pretrain.temperature must be a finite number, got nan"),
        ("pretrain.batch_size=1", "pretrain.batch_size must be ≥ 2, got 1"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_sections(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["pretrain", "P", "--epochs", "0"], "error: pretrain.epochs must be ≥ 1, got 0"),
        (["pretrain", "P", "--image-size", "8"], "error: pretrain.image_size must be 0 (native) or ≥ 32, got 8"),
        (["pretrain", "P", "--batch-size", "-4"], "error: pretrain.batch_size must be ≥ 2, got -4"),
        (["pretrain", "P", "--max-minutes", "nan"], "error: pretrain.max_minutes must be a finite number, got nan"),
        (["pretrain", "P", "--threads", "100000"], "error: pretrain.threads must be ≤ 512, got 100000"),
        (["pretrain", "P", "--seed", "-1"], "error: pretrain.seed must be ≥ 0, got -1"),
        (["scan", "P", "--set", "data.max_pixels=0"], "error: data.max_pixels must be ≥ 1, got 0"),
        (["fit", "P", "--set", "fit.cv_folds=1"], "error: fit.cv_folds must be ≥ 2, got 1"),
        (["train", "P", "--set", "train.cv_folds=1"], "error: fit.cv_folds must be ≥ 2, got 1"),  # the old names
        (["export", "P", "--set", "export.parity_atol=-1"], "error: export.parity_atol must be ≥ 0.0, got -1.0"),
        (["pretrain", "P", "--epochs", "many"], "error: sslinspect pretrain: argument --epochs: invalid int value"),
        (["pretrain", "P", "--device", "tpu"], "error: sslinspect pretrain: argument --device: invalid choice"),
        (
            ["predict", "m.onnx", "x", "--batch-size", "0"],
            "error: sslinspect predict: argument --batch-size: must be ≥ 1",
        ),
        (["predict", "m.onnx", "x", "--threshold", "inf"], "error: sslinspect predict: argument --threshold: must be"),
    ],
)
def test_cli_values_out_of_range_exit_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    argv = [str(tmp_path / "p") if a == "P" else a for a in argv]
    assert main(argv) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), errors


def test_config_file_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.json").write_text('{"pretrain": {"epochs": -1}}')
    assert main(["pretrain", str(tmp_path / "p"), "--config", str(tmp_path / "c.json")]) == 2
    assert capsys.readouterr().err.strip() == "error: pretrain.epochs must be ≥ 1, got -1"


# -- property-based --------------------------------------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)] + ["bogus"]


@settings(max_examples=400, deadline=None)
@given(section=st.sampled_from(sorted(SECTIONS)), data=st.data())
def test_any_json_builds_a_valid_config_or_raises_config_error(section: str, data: st.DataObject) -> None:
    cls = SECTIONS[section]
    keys = st.sampled_from(_field_names(cls) + _field_names(AugmentConfig))
    raw = data.draw(st.dictionaries(keys, _json, max_size=4) | _json)
    try:
        cfg: object = from_dict(cls, raw, section=section)  # type: ignore[arg-type]
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert from_dict(cls, to_dict(cfg), section=section) == cfg  # what is accepted round-trips


@settings(max_examples=400, deadline=None)
@given(
    cfg=st.sampled_from([PretrainConfig(), DataConfig(), FewShotConfig(), ExportConfig()]),
    key=st.sampled_from(["epochs", "lr", "amp", "device", "augment.hue", "augment.flip", "max_pixels", "x", "a.b"])
    | st.text(max_size=12),
    text=st.text(max_size=12) | st.sampled_from(["nan", "-inf", "1e999", "0", "-1", "true", "2" * 5000]),
)
def test_any_override_text_applies_or_raises_config_error(cfg: object, key: str, text: str) -> None:
    try:
        out = apply_override(cfg, key, text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert type(out) is type(cfg)
