"""benchmarks/bad_input_sweep.py: a few cheap cases through the real CLI give the table's columns and one clean
line each; a command that misbehaves (traceback, leftovers, a leaked password) is reported as not clean."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bad_input_sweep as sweep  # noqa: E402


def test_cheap_cases_through_the_cli_are_clean_and_tabled(tmp_path):
    out = tmp_path / "sweep.json"
    names = ["arch_unknown", "budget_units", "storage_password_at"]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bad_input_sweep.py"),
                           "--patsearch", f"{sys.executable} -m patsearch", "--out", str(out),
                           "--cases", ",".join(names)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    table = proc.stdout.strip().splitlines()
    assert table[0] == "| " + " | ".join(sweep.COLUMNS) + " |"
    assert table[0].split(" | ")[1:5] == ["command", "rc", "stderr lines", "first stderr line"]
    assert [line.split(" | ")[0].lstrip("| ") for line in table[2:]] == names
    rows = json.loads(out.read_text())
    assert [r["case"] for r in rows] == names
    for row in rows:
        assert (row["rc"], row["stderr lines"], row["left behind"], row["clean"]) == (2, 1, [], True), row
        assert row["first stderr line"].startswith("error: ")
    storage = rows[2]["first stderr line"]
    assert "***@" in storage and not any(piece in storage for piece in sweep.SECRET_PIECES)
    assert "unknown unit 'parsecs'" in rows[1]["first stderr line"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]  # the cases ran in their own folders


def test_a_misbehaving_command_is_not_clean(tmp_path):
    # A stand-in for patsearch that fails the way the sweep exists to catch: a traceback, rc 1, a file left behind
    # and the storage password echoed.
    code = ("import pathlib, sys; pathlib.Path('half.onnx').write_text('x'); "
            f"sys.stderr.write('Traceback (most recent call last):\\n  boom {sweep.SECRET_PIECES[1]}\\n'); sys.exit(1)")
    case = sweep.Case("fake", ("export",), setup=("file_f",))
    row = sweep.run_case(case, [sys.executable, "-c", code], tmp_path)
    assert (row["rc"], row["stderr lines"], row["left behind"], row["leaked"], row["clean"]) == \
        (1, 2, ["half.onnx"], True, False)  # the setup's own file f does not count as left behind
    assert row["first stderr line"] == "Traceback (most recent call last):"
    assert "| fake | `patsearch export` | 1 | 2 | Traceback (most recent call last): | half.onnx | **no** |" in \
        sweep.markdown([row])
