"""A form built from a config dataclass's field metadata (label, help, min, max, choices): one source of truth.

Ints become spin boxes, floats validated line edits, bools check boxes, fields with choices combo boxes, and a nested
config (the augmentations) a group box. :meth:`ConfigForm.value` builds the dataclass, so the core validates it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLineEdit, QSpinBox, QWidget

from sslinspect.api import from_dict, to_dict
from sslinspect.errors import ConfigError


class ConfigForm(QWidget):
    """Edit one config dataclass.

    Args:
        cls: The config class (e.g. ``PretrainConfig``).
        value: Initial values (defaults when None).
        fields: Which fields to show, in order (all when None); the others keep ``value``'s values.
        choices: Extra choices for plain string fields (method and backbone names come from the registries).

    Signals:
        changed: any field was edited.
    """

    changed = Signal()

    def __init__(
        self,
        cls: type,
        value: object | None = None,
        *,
        fields: Sequence[str] | None = None,
        choices: Mapping[str, Sequence[str]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.cls = cls
        self._base = value if value is not None else cls()
        self._choices = dict(choices or {})
        self._hints = typing.get_type_hints(cls)
        all_fields = {f.name: f for f in dataclasses.fields(cls)}
        names = list(fields) if fields is not None else list(all_fields)
        self._editors: dict[str, QWidget] = {}
        self._subforms: dict[str, ConfigForm] = {}
        lay = QFormLayout(self)
        lay.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        for name in names:
            f = all_fields[name]
            label = str(f.metadata.get("label", name))
            tip = str(f.metadata.get("help", ""))
            tp = self._hints[name]
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                sub = ConfigForm(tp, getattr(self._base, name), choices=self._choices, parent=self)
                sub.changed.connect(self.changed)
                box = QGroupBox(label)
                box.setToolTip(tip)
                inner = QFormLayout(box)
                inner.addRow(sub)
                self._subforms[name] = sub
                lay.addRow(box)
                continue
            editor = self._make_editor(name, tp, f.metadata)
            editor.setToolTip(tip)
            editor.setAccessibleName(label)
            editor.setObjectName(f"field_{name}")
            self._editors[name] = editor
            lay.addRow(label, editor)
        self.set_value(self._base)

    def _make_editor(self, name: str, tp: Any, meta: Mapping[str, Any]) -> QWidget:
        options = meta.get("choices") or self._choices.get(name)
        if options:
            combo = QComboBox()
            combo.addItems([str(o) for o in options])
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if tp is bool:
            check = QCheckBox()
            check.toggled.connect(self.changed)
            return check
        if tp is int:
            spin = QSpinBox()
            spin.setRange(int(meta.get("min", 0)), int(min(meta.get("max", 2**31 - 1), 2**31 - 1)))
            spin.setAccelerated(True)
            spin.valueChanged.connect(self.changed)
            return spin
        line = QLineEdit()
        if tp is float:
            validator = QDoubleValidator(float(meta.get("min", -1e300)), float(meta.get("max", 1e300)), 12, line)
            validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
            line.setValidator(validator)
        line.textEdited.connect(self.changed)
        return line

    # -- values -------------------------------------------------------------------------------------------------
    def set_value(self, value: object) -> None:
        """Show the values of config ``value``."""
        self._base = value
        for name, editor in self._editors.items():
            v = getattr(value, name)
            editor.blockSignals(True)
            if isinstance(editor, QComboBox):
                i = editor.findText(str(v))
                if i < 0:
                    editor.addItem(str(v))
                    i = editor.count() - 1
                editor.setCurrentIndex(i)
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(v))
            elif isinstance(editor, QSpinBox):
                editor.setValue(int(v))
            elif isinstance(editor, QLineEdit):
                editor.setText(f"{v:g}" if isinstance(v, float) else str(v))
            editor.blockSignals(False)
        for name, sub in self._subforms.items():
            sub.set_value(getattr(value, name))

    def raw_values(self) -> dict[str, Any]:
        """The edited values as a plain dict (nested configs as dicts), not yet validated."""
        data = to_dict(self._base)
        for name, editor in self._editors.items():
            tp = self._hints[name]
            if isinstance(editor, QComboBox):
                text = editor.currentText()
                data[name] = type(getattr(self._base, name))(text)
            elif isinstance(editor, QCheckBox):
                data[name] = editor.isChecked()
            elif isinstance(editor, QSpinBox):
                data[name] = editor.value()
            elif isinstance(editor, QLineEdit):
                text = editor.text().strip()
                if tp is float:
                    try:
                        data[name] = float(text.replace(",", "."))
                    except ValueError:
                        raise ConfigError(f"{self._label(name)}: {text!r} is not a number") from None
                else:
                    data[name] = text
        for name, sub in self._subforms.items():
            data[name] = sub.raw_values()
        return data

    def value(self) -> Any:
        """The config built from the form.

        Raises:
            ConfigError: naming the field when a value is invalid.
        """
        return from_dict(self.cls, self.raw_values(), section=self.cls.__name__)

    def editor(self, name: str) -> QWidget:
        """The editor widget of field ``name`` (nested fields as ``augment.flip``)."""
        head, _, rest = name.partition(".")
        return self._subforms[head].editor(rest) if rest else self._editors[head]

    def _label(self, name: str) -> str:
        f = {f.name: f for f in dataclasses.fields(self.cls)}[name]
        return str(f.metadata.get("label", name))
