"""Declaring and checking params: each knob's type, range, default and meaning, written once.

A section of ``params.yaml`` is a frozen dataclass whose fields are made by :func:`knob`; the
phase that uses a section declares it (``vaelab/<phase>/params.py``) and :func:`parse_section`
checks a parsed YAML mapping against it. After that the library trusts the values it is given.

Plain dataclasses rather than pydantic: the rules here are few (integers, numbers in a range,
choices, lists of positive integers), a bad value must be one line in this project's words
(``params.yaml: <key> = <value> is invalid; allowed: <what>``), ``true`` must never pass for
the integer 1, and the stages need no extra dependency or import time for it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from vaelab.core.errors import VaelabError


@dataclass(frozen=True)
class Knob:
    """The rule of one knob: ``kind`` is "int", "float", "bool", "choice", "int_list" or "text"
    (a non-empty string, described by ``doc``);
    ``low``/``high`` bound numbers (``low_inclusive``: whether ``low`` itself is allowed; ``high``
    is always excluded); ``choices`` for "choice", and for "float" the names it takes beside a
    number; ``doc`` says what the knob means."""

    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    choices: tuple[Any, ...] = ()

    def allowed(self) -> str:
        """What the knob accepts, in words (the end of its error message)."""
        if self.kind == "bool":
            return "true | false"
        if self.kind == "choice":
            return " | ".join(map(str, self.choices))
        if self.kind == "int_list":
            return "a non-empty list of positive integers"
        if self.kind == "text":
            return self.doc
        what = "an integer" if self.kind == "int" else "a number"
        text = f"{what} {'>=' if self.low_inclusive else '>'} {self.low:g}" if self.low is not None else what
        text += f" and < {self.high:g}" if self.high is not None else ""
        return " | ".join((text, *self.choices))

    def check(self, key: str, value: Any) -> Any:
        """``value`` as the knob's type, or a :class:`VaelabError` naming ``key`` and the value."""
        if self.kind == "choice":
            # bool is an int subclass: `channels: true` is a mistake, not 1.
            if isinstance(value, bool) or value not in self.choices:
                raise invalid(key, value, self.allowed())
            return value
        if self.kind == "text":
            if not isinstance(value, str) or not value:
                raise invalid(key, value, self.doc)
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise invalid(key, value, self.allowed())
            return value
        if self.kind == "int_list":
            if (not isinstance(value, (list, tuple)) or not value
                    or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
                raise invalid(key, value, self.allowed())
            return tuple(value)
        if self.kind == "float" and isinstance(value, str) and value in self.choices:
            return value  # a number, or one of the named settings (``gamma: learned``)
        wanted = (int,) if self.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise invalid(key, value, self.allowed())
        if self.kind == "float":
            value = float(value)
        too_low = self.low is not None and (value < self.low if self.low_inclusive else value <= self.low)
        if too_low or (self.high is not None and value >= self.high) or not math.isfinite(value):
            raise invalid(key, value, self.allowed())
        return value


REQUIRED = dataclasses.MISSING


def knob(default: Any, kind: str, doc: str, **rule: Any) -> Any:
    """A dataclass field that is a knob of params.yaml: its default (:data:`REQUIRED` for none)
    and its :class:`Knob` rule."""
    return field(default=default, metadata={"knob": Knob(kind, doc, **rule)})


def invalid(key: str, value: Any, allowed: str) -> VaelabError:
    return VaelabError(f"params.yaml: {key} = {value!r} is invalid; allowed: {allowed}")


def knobs(cls: type) -> dict[str, dataclasses.Field]:
    """The knob fields of dataclass ``cls`` by name."""
    return {f.name: f for f in dataclasses.fields(cls) if "knob" in f.metadata}


def section(raw: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    """``raw[key]``, a mapping (absent: empty), or an error naming ``prefix + key``."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(prefix + key, value, "a mapping of settings")
    return value


def check_keys(raw: Mapping[str, Any], allowed: set[str] | dict, prefix: str) -> None:
    """Refuse a key of ``raw`` outside ``allowed``: one line naming it and listing the allowed ones."""
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise VaelabError(f"params.yaml: unknown key {prefix}{unknown[0]}; allowed keys: {', '.join(sorted(allowed))}")


def parse_section(cls: type, raw: Mapping[str, Any], prefix: str = "", *, whole: bool = True, **given: Any) -> Any:
    """An instance of ``cls`` from the mapping ``raw`` (keys named ``prefix + field`` in errors):
    each knob checked by its rule, a missing one taking its default (or failing where it has
    none). ``whole``: ``raw`` is the entire section, so a key that is no knob of ``cls`` is an
    error (False for the top level, whose keys belong to several phases). ``given``: fields that
    are no knobs (a dataset's name)."""
    fields = knobs(cls)
    if whole:
        check_keys(raw, fields, prefix)
    values = dict(given)
    for name, f in fields.items():
        rule = f.metadata["knob"]
        if raw.get(name) is None:
            if f.default is REQUIRED:
                raise VaelabError(f"params.yaml: {prefix}{name} is missing; set it to {rule.allowed()}")
            values[name] = f.default
            continue
        values[name] = rule.check(prefix + name, raw[name])
    return cls(**values)
