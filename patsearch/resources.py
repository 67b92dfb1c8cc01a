"""Where the bundled search spaces and lookup tables are: the checkout's top-level folders when running from a
clone (or an editable install), else the copies a regular install puts under ``<prefix>/share/patsearch``."""
from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def bundled_dir(name: str) -> Path:
    """The directory of bundled data ``name`` (``spaces`` or ``profiles``)."""
    local = _CHECKOUT / name
    if local.is_dir():
        return local
    return Path(sys.prefix) / "share" / "patsearch" / name
