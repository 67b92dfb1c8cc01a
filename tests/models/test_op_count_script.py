"""benchmarks/op_count.py: the ops of one training step, split by phase and module, with exact structural counts."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_counts_are_exact_where_the_structure_fixes_them(tmp_path):
    out = tmp_path / "ops.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "op_count.py"), "--archs", "patnet_t0",
                           "fasternet_t0", "--resolution", "32", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    patnet, fasternet = json.loads(out.read_text())["results"]
    # FasterNet-T0: 13 blocks, the stem and 3 merging layers, one BN each; every conv has a backward
    assert (fasternet["batch_norms"], fasternet["convs"]) == (17, 44)
    assert fasternet["top_ops"]["backward:convolution_backward"] == 44
    assert patnet["batch_norms"] == 61 and patnet["convs"] == 79
    assert patnet["ops"] == patnet["forward"] + patnet["backward"] and patnet["ops"] > 3 * fasternet["ops"]
    assert sum(patnet["forward_by_module"].values()) == patnet["forward"]
    assert "patnet_t0: " in proc.stdout and "ops per training step" in proc.stdout
