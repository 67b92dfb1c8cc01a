"""Where user data goes: $PATSEARCH_HOME, else the XDG data folder; never the source tree; found before shipped."""
from pathlib import Path

import pytest

from patsearch.profiler import table
from patsearch.profiler.devices import get_device
from patsearch.profiler.table import Profile, find_profile, profile_path
from patsearch.resources import bundled_dir, user_profiles_dir


def test_user_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PATSEARCH_HOME", str(tmp_path / "ph"))
    assert user_profiles_dir() == tmp_path / "ph" / "profiles"
    monkeypatch.delenv("PATSEARCH_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_profiles_dir() == tmp_path / "xdg" / "patsearch" / "profiles"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert user_profiles_dir() == tmp_path / "h" / ".local" / "share" / "patsearch" / "profiles"


def test_profiles_are_written_to_the_user_folder_not_the_source_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("PATSEARCH_HOME", str(tmp_path / "ph"))
    dev = get_device("cpu")
    path = profile_path("cpu", dev.protocol)  # the default space's sub-folder
    assert path == tmp_path / "ph" / "profiles" / "patnet-wide" / "cpu-b1-float32-nchw-t1-cputime-fused.json"
    assert bundled_dir("profiles") not in path.parents


def _write(folder: Path, device: str, hardware: str) -> Path:
    dev = get_device(device)
    profile = Profile.new(dev, dev.protocol, command="test")
    profile.provenance["hardware"] = hardware
    return profile.save(profile_path(device, dev.protocol, folder))


def test_user_profiles_are_found_before_shipped_ones(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(table, "PROFILES_DIR", shipped)
    monkeypatch.setenv("PATSEARCH_HOME", str(tmp_path / "ph"))
    monkeypatch.delenv("PATSEARCH_IGNORE_SHIPPED_PROFILES", raising=False)
    in_shipped = _write(shipped, "cpu", "shipped CPU")
    assert find_profile("cpu") == in_shipped
    mine = _write(tmp_path / "ph" / "profiles", "cpu", "my CPU")
    assert find_profile("cpu") == mine
    mine.unlink()
    monkeypatch.setenv("PATSEARCH_IGNORE_SHIPPED_PROFILES", "1")
    with pytest.raises(table.ProfileError, match=r"no profile for device 'cpu' in .*ph/profiles;"):
        find_profile("cpu")
