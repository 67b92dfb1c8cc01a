"""benchmarks/proof_table.py on the committed multi-fidelity study: networks are linked to their rung scores by the
trial their file names or the baseline they are, references short of full length stay out of the mean, the
difference to the baseline carries its standard error, and the bench file gives the latency ratio. Bad input is
one line and nothing written."""
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STUDY_TAR = ROOT / "docs" / "results" / "search" / "mf-cpu-2026-12-07" / "runs.tgz"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with tarfile.open(STUDY_TAR) as tar:
        tar.extractall(runs, members=[m for m in tar.getmembers() if m.name.lstrip("./").startswith("mf-cpu")],
                       filter="data")
    return runs


def _table(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "proof_table.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def _reference(runs: Path, name: str, top1s: list[float]) -> None:
    folder = runs / "ref" / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"history": [{"epoch": i, "top1": t} for i, t in
                                                                 enumerate(top1s)]}))


def test_rungs_references_difference_and_latency(runs, tmp_path):
    trial79 = {"embed_dim": 48, "depths": [1, 2, 5, 2], "n_div": 4, "mlp_ratio": 3,
               "mixers": ["pat_ch", "pat_ch", "pat_ch", "pat_sf"], "spatial": ["partial"] * 4, "act": "gelu",
               "num_heads": 4, "drop_path_rate": 0.0, "num_classes": 1000, "head_width": 1280}
    arch = tmp_path / "rank1.yaml"
    arch.write_text(yaml.safe_dump({"arch": {**trial79, "name": "mf-cpu-trial79"},
                                    "search": {"study": "mf-cpu", "trial": 79}}))
    _reference(runs, "mf-s0", [80.0, 87.0])
    _reference(runs, "mf-s1", [80.0, 86.0])
    _reference(runs, "patnet_t1-s0", [80.0, 86.5])
    _reference(runs, "patnet_t1-s1", [80.0, 85.5])
    _reference(runs, "patnet_t1-s2", [79.0])  # cut short: shown, not averaged
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"metric": "latency_ms", "rows": [
        {"model": str(arch), "form": "fused", "value": 27.0}, {"model": str(arch), "form": "trained", "value": 40.0},
        {"model": "patnet_t1", "form": "fused", "value": 30.0}]}))
    out = tmp_path / "table.md"
    proc = _table("--runs", str(runs), "--study", "mf-cpu", "--net", f"mf={arch}", "--net", "patnet_t1=patnet_t1",
                  "--baseline", "patnet_t1", "--epochs", "2", "--rung-epochs", "5,15,45", "--bench", str(bench),
                  "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text() == proc.stdout
    head, _, mf, t1 = proc.stdout.splitlines()
    assert "| rung 0 (5 ep) | rung 1 (15 ep) | rung 2 (45 ep) |" in head and "- patnet_t1 (± se)" in head
    mf_cells, t1_cells = mf.split(" | "), t1.split(" | ")
    assert mf_cells[0] == "| mf (trial 79)" and t1_cells[0] == "| patnet_t1 (trial 0)"  # by file, by baseline
    assert mf_cells[2:4] == ["70.56", "82.10"] and t1_cells[2:4] == ["70.90", "81.50"]  # the study's rungs (%)
    assert mf_cells[4] == "85.74 / 86.32" and t1_cells[4] == "85.98 / 85.64"  # the last rung's two seeds
    assert mf_cells[5] == "s0 87.00, s1 86.00" and t1_cells[5] == "s0 86.50, s1 85.50, s2 79.00 (1 ep)"
    assert mf_cells[6] == "**86.50** ± 0.71 (2)" and t1_cells[6] == "**86.00** ± 0.71 (2)"
    assert mf_cells[7] == "+0.50 ± 0.71"  # sqrt(0.5/2 + 0.5/2)
    assert mf_cells[8:10] == ["27.00", "0.900 |"]  # the fused row, over T1's


@pytest.mark.parametrize("args, message", [
    (["--net", "mf"], "--net 'mf': give LABEL=SOURCE, e.g. patnet_t1=patnet_t1"),
    (["--net", "mf=patnet_t9"], "--net mf=patnet_t9: unknown architecture 'patnet_t9'"),
    (["--net", "t1=patnet_t1", "--baseline", "t0"], "--baseline t0: not one of the --net labels (t1)"),
    (["--net", "t1=patnet_t1", "--study", "nope"], "no study database at"),
])
def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, args, message):
    base = ["--runs", str(runs), "--study", "mf-cpu", "--out", str(tmp_path / "t.md")]
    proc = _table(*base, *args, cwd=tmp_path)
    assert proc.returncode != 0 and proc.stderr.strip().startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.md").exists()


def test_without_a_study_the_table_has_references_only(tmp_path):
    runs = tmp_path / "runs"
    _reference(runs, "t0-s0", [60.0, 70.0])
    _reference(runs, "t0-s1", [61.0])  # cut short
    proc = _table("--runs", str(runs), "--net", "t0=patnet_t0", "--epochs", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    head, _, row = proc.stdout.splitlines()
    assert head == "| network | architecture | 2-epoch top-1 by seed | mean ± sd |"
    assert row.split(" | ")[2:] == ["s0 70.00, s1 61.00 (1 ep)", "70.00 (1) |"]


def test_a_single_seed_network_takes_the_pooled_seed_sd_and_none_without_one(tmp_path):
    runs = tmp_path / "runs"
    for seed, top1 in enumerate([86.0, 87.0, 88.0]):  # sd 1.0
        _reference(runs, f"t1-s{seed}", [top1])
    _reference(runs, "r2-s0", [85.0])
    proc = _table("--runs", str(runs), "--net", "t1=patnet_t1", "--net", "r2=patnet_t0", "--baseline", "t1",
                  "--epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r2 = proc.stdout.splitlines()[3].split(" | ")
    assert r2[4] == f"-2.00 ± {(1.0 + 1.0 / 3) ** 0.5:.2f} |"  # pooled sd 1.0 for r2's one seed, T1's own over 3
    (runs / "ref" / "t1-s1").rename(runs / "ref" / "x")
    (runs / "ref" / "t1-s2").rename(runs / "ref" / "y")
    proc = _table("--runs", str(runs), "--net", "t1=patnet_t1", "--net", "r2=patnet_t0", "--baseline", "t1",
                  "--epochs", "1", cwd=tmp_path)
    assert proc.stdout.splitlines()[3].split(" | ")[4] == "-1.00 |"  # one seed each: no standard error to give
