"""benchmarks/reference_stability.py on the committed CIFAR-10 records: the 25- and 50-epoch references' tau."""
import json
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "reference_stability.py"


def _unpack(name: str, where: Path) -> Path:
    with tarfile.open(ROOT / "docs" / "search" / name) as tar:
        tar.extractall(where, filter="data")
    return where / "proxy-fidelity-cifar10.records"


def test_the_two_references_tau_matches_the_committed_table(tmp_path):
    a = _unpack("proxy-fidelity-cifar10.records.tgz", tmp_path / "a")
    b = _unpack("proxy-fidelity-cifar10-reference50.records.tgz", tmp_path / "b")
    out = tmp_path / "stability.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--kinds", "A:reference,B:reference,A:alt5",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    committed = json.loads((ROOT / "docs" / "search" / "reference-stability-cifar10.json").read_text())
    assert result["networks"] == 20
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert pairs["A:reference", "B:reference"]["kendall_tau"] == next(
        p["kendall_tau"] for p in committed["pairs"] if (p["a"], p["b"]) == ("A:reference", "B:reference"))
    lo, hi = pairs["A:reference", "B:reference"]["ci95"]
    assert lo < pairs["A:reference", "B:reference"]["kendall_tau"] < hi
    assert result["spread"]["B:reference"]["seeds"] == 2 and result["spread"]["A:reference"]["seeds"] == 3
    assert "25 ep, 64 px" in proc.stdout and "50 ep, 64 px" in proc.stdout


def test_a_folder_without_a_plan_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "no plan.json; give the .records folder of a proxy-check" in proc.stderr
