"""What values a setting may take, declared where the setting is (``setting(..., domain=...)``)
and checked for every setting when a config is loaded, before any data is read.

A domain says what it allows in words (``at least 1``, ``in [0, 1)``), so the one-line error
names the key, the value and what is allowed. On a list setting it holds for each element.
Every float setting must be finite, whatever its domain.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (either may be None: unbounded); ``open_low`` /
    ``open_high`` leave the bound out; ``also``: values allowed besides (``-1``: auto)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    also: tuple = ()

    def allows(self, value) -> bool:
        if value in self.also:
            return True
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.open_high else value > self.high)
        )

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
            text += ")" if self.open_high else "]"
        elif self.low is not None:
            text = f"{'above' if self.open_low else 'at least'} {self.low:g}"
        else:
            text = f"{'below' if self.open_high else 'at most'} {self.high:g}"
        return text + "".join(f", or {value}" for value in self.also)


@dataclass(frozen=True)
class CountOrFraction:
    """A whole number of items (at least 1) or a fraction of them (in (0, 1])."""

    def allows(self, value) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return value >= 1
        return 0.0 < value <= 1.0

    def __str__(self) -> str:
        return "a count (a whole number, at least 1) or a fraction in (0, 1] (a decimal: 1.0)"


def setting(default, help: str, choices: tuple | None = None, domain=None):  # noqa: A002
    """A dataclass field with its help text and, optionally, the values it may take: one of
    ``choices``, or a number in ``domain`` (:mod:`metarec.config.domain`), checked at load."""
    metadata = {"help": help, "choices": choices, "domain": domain}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, open_high=True)  # a share that leaves something over
OPEN_FRACTION = Range(0, 1, open_low=True, open_high=True)


def violation(node, prefix: str = "") -> str | None:
    """The first setting of the dataclass ``node`` (nested ones included) outside its
    ``choices`` or ``domain``, or a float that is not finite: ``key 'k': value is not ...``."""
    for spec in dataclasses.fields(node):
        value, key = getattr(node, spec.name), f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            found = violation(value, f"{key}.")
            if found:
                return found
            continue
        choices, domain = spec.metadata.get("choices"), spec.metadata.get("domain")
        if choices and value not in choices:
            return f"key '{key}': '{value}' is not one of {', '.join(map(str, choices))}"
        for element in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(element, float) and not math.isfinite(element):
                return f"key '{key}': {element} is not a finite number"
            is_number = isinstance(element, (int, float)) and not isinstance(element, bool)
            if domain is not None and is_number and not domain.allows(element):
                shown = value if element is value else f"{value} (element {element})"
                return f"key '{key}': {shown} is not allowed; it must be {domain}"
    return None
