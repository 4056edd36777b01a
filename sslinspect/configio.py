"""Config (de)serialisation: strict ``from_dict``, ``to_dict``, and ``--set section.field=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from sslinspect.config import DataConfig, EvaluateConfig, ExportConfig, FewShotConfig, PretrainConfig
from sslinspect.errors import ConfigError
from sslinspect.safeio import FileRefused, read_bounded

T = TypeVar("T")

#: A config file is a few KB; anything beyond this is not one.
MAX_CONFIG_BYTES = 4 * 2**20

#: Top-level sections of a ``--config`` JSON file and of ``--set`` keys.
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "pretrain": PretrainConfig,
    "fit": FewShotConfig,
    "export": ExportConfig,
    "evaluate": EvaluateConfig,
}
#: Older names of sections, still read: the few-shot fit's section was called ``train`` before 0.2.
OLD_SECTIONS: dict[str, str] = {"train": "fit"}


def section_of(raw: dict[str, Any], name: str) -> Any:
    """Section ``name`` of a config dict (a ``--config`` file or a run's ``config.json``), under its old name too.

    Returns:
        The section's dict, or None when neither name is present.
    """
    if name in raw:
        return raw[name]
    return next((raw[old] for old, new in OLD_SECTIONS.items() if new == name and old in raw), None)


def to_dict(cfg: object) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass (nested configs become dicts)."""
    return dataclasses.asdict(cfg)  # type: ignore[call-overload]


def _show(key: str) -> str:
    """A key as written when it is a plain name, else quoted (keeps messages on one line)."""
    return key if key.isidentifier() else repr(key)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any], *, section: str = "") -> T:
    """Build ``cls`` from ``data``, rejecting unknown keys and values of the wrong type.

    Raises:
        ConfigError: on an unknown key, a wrong type or a value out of range.
    """
    section = section or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a JSON object, got {type(data).__name__}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in {section}: {', '.join(map(_show, unknown))}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{section}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(f"{section}: {exc}") from exc


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Check/convert a JSON value to the declared field type (ints are accepted for floats)."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, str) and hasattr(tp, "from_preset"):  # a named preset, e.g. "augment": "natural"
            return tp.from_preset(value)
        return from_dict(tp, value, section=name)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(args[0], value, name)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{name} is too large: {value}") from None
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - only the types above are used in configs
        return value
    raise ConfigError(f"{name} must be {tp.__name__}, got {value!r}")


def parse_value(tp: Any, text: str, name: str) -> Any:
    """Parse the text of a ``--set`` value according to the field type ``tp``."""
    if dataclasses.is_dataclass(tp) and hasattr(tp, "from_preset"):  # --set pretrain.augment=orientation-free
        return tp.from_preset(text.strip())
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except (ValueError, OverflowError):
            raise ConfigError(f"{name} must be a number, got {text!r}") from None
    return text


def apply_override(cfg: T, key: str, text: str) -> T:
    """Return ``cfg`` with the dotted field ``key`` (relative to ``cfg``) set from ``text``.

    Raises:
        ConfigError: for an unknown field or an unparsable/out-of-range value.
    """
    head, _, rest = key.partition(".")
    hints = _field_types(type(cfg))
    if head not in hints:
        raise ConfigError(f"unknown config key {key!r}")
    tp = hints[head]
    if rest:
        if not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            raise ConfigError(f"unknown config key {key!r}")
        value = apply_override(getattr(cfg, head), rest, text)
    else:
        value = parse_value(tp, text, key)
    try:
        return dataclasses.replace(cfg, **{head: value})  # type: ignore[type-var]
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from exc


def load_sections(path: Path | None, overrides: list[str]) -> dict[str, object]:
    """Read a ``--config`` JSON file (optional) and apply ``section.field=value`` overrides.

    A section under an old name (:data:`OLD_SECTIONS`, e.g. ``train`` for ``fit``) is read as the new one.

    Returns:
        One config object per section in :data:`SECTIONS`, defaults where not given.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            # bounded: `--config /dev/zero` or a FIFO is refused, not read until the memory runs out
            raw = json.loads(read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8-sig"))  # editors add a BOM
        except FileRefused as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.reason})") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        except RecursionError:
            raise ConfigError(f"{path}: JSON nested too deeply") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config must be a JSON object of sections")
        unknown = sorted(set(raw) - set(SECTIONS) - set(OLD_SECTIONS))
        if unknown:
            raise ConfigError(
                f"{path}: unknown section(s) {', '.join(map(_show, unknown))}; known: {', '.join(SECTIONS)}"
            )
        both = [f"{old!r} and {new!r}" for old, new in OLD_SECTIONS.items() if old in raw and new in raw]
        if both:
            raise ConfigError(f"{path}: sections {both[0]} are the same section (the old and the new name); keep one")
    out: dict[str, object] = {
        name: from_dict(cls, section_of(raw, name) or {}, section=name) for name, cls in SECTIONS.items()
    }
    for item in overrides:
        key, sep, text = item.partition("=")
        section, _, rest = key.strip().partition(".")
        section = OLD_SECTIONS.get(section, section)
        if not sep or not rest or section not in SECTIONS:
            raise ConfigError(f"--set expects section.field=value with section in {', '.join(SECTIONS)}; got {item!r}")
        out[section] = apply_override(out[section], rest, text)
    return out
