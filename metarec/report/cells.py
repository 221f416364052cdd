"""How a value is written in every table metarec makes: one cell formatter."""

from __future__ import annotations

from numbers import Real

MISSING = "–"  # no value: a metric a method does not report, a failed trial


def cell(value, digits: int = 4, *, signed: bool = False, significant: bool = False) -> str:
    """``value`` as a table cell: a number with ``digits`` decimals (``significant``: that many
    significant digits; ``signed``: with its sign), ``None`` as ``–``, anything else as ``str``.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    return format(value, f"{'+' if signed else ''}.{digits}{'g' if significant else 'f'}")
