"""Atomic writes: the target holds the old content or the new, never a part; failures leave no temp files."""
import json
import os
import stat

import pytest

from patsearch.io import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_create_parents_and_replace(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    atomic_write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert _leftovers(path.parent) == []


def test_mode_is_what_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    path = atomic_write_text(tmp_path / "atomic", "x")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(path, "wb") as fh:
            fh.write(b"half of the new cont")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_a_failing_writer_creates_nothing(tmp_path):
    path = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path, "w") as fh:
            fh.write("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_json_touches_nothing(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("{}")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})
    assert path.read_text() == "{}" and _leftovers(tmp_path) == []


def test_data_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "f", "data")
    assert calls == ["fsync", "replace", "fsync"]


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(tmp_path / "f", "a"):
            pass


def test_atomic_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from patsearch.io import atomic_save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = atomic_save_figure(fig, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_ensure_writable_accepts_new_paths_and_creates_nothing(tmp_path):
    from patsearch.io import ensure_writable

    assert ensure_writable(tmp_path / "a" / "b" / "m.onnx", "--onnx") == tmp_path / "a" / "b" / "m.onnx"
    assert ensure_writable(tmp_path / "runs" / "t0", "--out", folder=True) == tmp_path / "runs" / "t0"
    assert list(tmp_path.iterdir()) == []  # neither the missing folders nor the probe file


@pytest.mark.parametrize("target, folder, reason", [
    ("f/run", True, "f is a file, not a folder"),
    ("f/deeper/m.onnx", False, "f is a file, not a folder"),
    ("dir", False, "it is a folder"),
])
def test_ensure_writable_names_the_path_and_why(tmp_path, target, folder, reason):
    from patsearch.errors import UserError
    from patsearch.io import ensure_writable

    (tmp_path / "f").write_text("a file")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError) as info:
        ensure_writable(tmp_path / target, "--out", folder=folder, example="runs/t0")
    message = str(info.value)
    assert message.startswith(f"cannot write --out {tmp_path / target}: ")
    assert reason in message and message.endswith("e.g. --out runs/t0") and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "f"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_ensure_writable_refuses_a_virtual_file_system():
    from patsearch.errors import UserError
    from patsearch.io import ensure_writable

    # as root the kernel answers "no such file", as a user "permission denied"
    with pytest.raises(UserError, match=r"cannot write --onnx /proc/x.onnx: /proc: (accepts no new files|permission "
                                        r"denied); pass --onnx a path in a writable folder$"):
        ensure_writable("/proc/x.onnx", "--onnx")
