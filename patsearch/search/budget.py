"""Parse latency budgets (``35ms``, ``35 ms``, ``0.035s``, ``35000us``) and throughput floors (``4000fps``).

Budgets are stored in milliseconds and throughputs in images per second, the units the lookup tables use.
"""
from __future__ import annotations

import math
import re

from patsearch.errors import UserError

# Multipliers to milliseconds. "µs" and "us" are both accepted; a bare number is rejected, not guessed.
_TIME_UNITS = {"s": 1000.0, "sec": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ns": 1e-6}
# Multipliers to images per second.
_RATE_UNITS = {"fps": 1.0, "img/s": 1.0, "images/s": 1.0, "/s": 1.0, "kfps": 1000.0}
_NUMBER = r"(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"


class BudgetError(UserError, ValueError):
    """A latency budget or throughput floor could not be understood."""


def _split(text: str, units: dict[str, float], what: str, example: str) -> float:
    if not isinstance(text, str) or not text.strip():
        raise BudgetError(f"{what}: empty value; write it with a unit, e.g. {example}")
    raw = text.strip()
    match = re.fullmatch(_NUMBER + r"\s*(?P<unit>[^\d\s].*)?", raw)
    if match is None:
        raise BudgetError(f"{what} {raw!r}: not a number with a unit; write it like {example}")
    unit = (match.group("unit") or "").strip()
    if not unit:
        raise BudgetError(f"{what} {raw!r}: missing unit; write it like {example} "
                          f"(units: {', '.join(u for u in units if u not in ('μs',))})")
    key = unit.lower() if unit.lower() in units else unit
    if key not in units:
        raise BudgetError(f"{what} {raw!r}: unknown unit {unit!r}; use one of "
                          f"{', '.join(u for u in units if u not in ('μs',))} (e.g. {example})")
    value = float(match.group("value")) * units[key]
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"{what} {raw!r}: must be a positive, finite amount (e.g. {example})")
    return value


def parse_latency(text: str) -> float:
    """A latency budget in milliseconds: ``"35ms"``, ``"35 ms"``, ``"0.035s"``, ``"35000us"`` -> ``35.0``."""
    return _split(text, _TIME_UNITS, "latency budget", "35ms")


def parse_throughput(text: str) -> float:
    """A throughput floor in images per second: ``"4000fps"``, ``"4000 img/s"``, ``"4kfps"`` -> ``4000.0``."""
    return _split(text, _RATE_UNITS, "throughput", "4000fps")


def format_latency(ms: float) -> str:
    return f"{ms:.3g} ms" if ms < 1000 else f"{ms / 1000:.3g} s"


def format_throughput(fps: float) -> str:
    return f"{fps:,.0f} img/s"


def describe_limit(device: str, kind: str, limit: float, relative_to: str | None = None) -> str:
    """``"epyc latency <= 27.1 ms"``, ``"h100 throughput >= 29,898 img/s (fasternet_t2)"``: one wording for a live
    constraint and for one stored with a study."""
    op, value = ("<=", format_latency(limit)) if kind == "latency" else (">=", format_throughput(limit))
    text = f"{device} {kind} {op} {value}"
    return f"{text} ({relative_to})" if relative_to else text
