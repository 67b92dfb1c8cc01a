"""Where patsearch's data lives.

Bundled, read-only data (search spaces, shipped lookup tables) is the checkout's top-level folders when running
from a clone (or an editable install), else the copies a regular install puts under ``<prefix>/share/patsearch``.
What a user builds (profiles measured or adapted on their own hardware) goes to a per-user data directory,
never into the source tree or the install prefix: ``$PATSEARCH_HOME``, else ``$XDG_DATA_HOME/patsearch``, else
``~/.local/share/patsearch``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]

HOME_ENV = "PATSEARCH_HOME"
# Set to 1 to treat the shipped tables as measured elsewhere: they are then never used to predict directly, only as
# bases to adapt from (how a host without a table of its own behaves, reproducible on any host).
IGNORE_SHIPPED_ENV = "PATSEARCH_IGNORE_SHIPPED_PROFILES"


def bundled_dir(name: str) -> Path:
    """The directory of bundled data ``name`` (``spaces`` or ``profiles``)."""
    local = _CHECKOUT / name
    if local.is_dir():
        return local
    return Path(sys.prefix) / "share" / "patsearch" / name


def shipped_fidelity_dir() -> Path:
    """The proxy-check reports the search states with its results, shipped next to the tables they go with."""
    return bundled_dir("profiles") / "fidelity"


def user_data_dir() -> Path:
    """The per-user data directory (read from the environment on every call, so tests and users can move it)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "patsearch"


def user_profiles_dir() -> Path:
    """Where ``patsearch profile`` writes by default and where lookups look first."""
    return user_data_dir() / "profiles"


def shipped_profiles_ignored() -> bool:
    return os.environ.get(IGNORE_SHIPPED_ENV, "").strip().lower() not in ("", "0", "false", "no")
