"""benchmarks/op_count.py: the ops of one training step, split by phase and module, with exact structural counts,
and the bytes they move."""
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed_common import distinct_bytes, op_traffic  # noqa: E402

from patsearch.arch import VARIANTS  # noqa: E402


def test_counts_are_exact_where_the_structure_fixes_them(tmp_path):
    out = tmp_path / "ops.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "op_count.py"), "--archs", "patnet_t0",
                           "fasternet_t0", "--resolution", "32", "--fused", "--out", str(out)], capture_output=True,
                          text=True, timeout=300, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    patnet, fused, fasternet = json.loads(out.read_text())["results"]
    assert (patnet["arch"], fused["arch"], fasternet["arch"]) == ("patnet_t0", "patnet_t0+fused", "fasternet_t0")
    # FasterNet-T0: 13 blocks, the stem and 3 merging layers, one BN each; every conv has a backward
    assert (fasternet["batch_norms"], fasternet["convs"]) == (17, 44)
    assert fasternet["top_ops"]["backward:convolution_backward"] == 44
    assert patnet["batch_norms"] == 61 and patnet["convs"] == 79
    assert patnet["ops"] == patnet["forward"] + patnet["backward"] and patnet["ops"] > 3 * fasternet["ops"]
    assert sum(patnet["forward_by_module"].values()) == patnet["forward"]
    assert "patnet_t0: " in proc.stdout and "ops per training step" in proc.stdout
    # Fused: every block's PAT_sp gate conv becomes one op, every PAT_ch block's post-gate BN is folded away.
    arch = VARIANTS["patnet_t0"]
    pat_ch_blocks = sum(d for d, m in zip(arch.depths, arch.mixers) if m == "pat_ch")
    assert fused["convs"] == patnet["convs"] - sum(arch.depths)
    assert fused["batch_norms"] == patnet["batch_norms"] - pat_ch_blocks
    assert fused["op_counts"]["forward:spatial_gate"] == sum(arch.depths)
    # Traffic: per image, free of the batch-independent part; the fused form moves less, and the step is the sum.
    for r in (patnet, fused, fasternet):
        mib = r["mib_per_image"]
        assert mib["step"] == mib["forward"] + mib["backward"] and mib["forward"] > 0 and r["fixed_mib"] > 0
    assert fused["mib_per_image"]["step"] < patnet["mib_per_image"]["step"]


def test_a_broadcast_operand_counts_its_distinct_elements_once():
    row = torch.ones(1, 5, dtype=torch.bfloat16)
    assert distinct_bytes(row) == 10
    assert distinct_bytes(row.expand(7, 5)) == 10
    assert distinct_bytes(torch.ones(3, 4)[:, :2]) == 3 * 2 * 4


def test_an_out_target_is_written_not_read():
    a, b, target = torch.ones(4), torch.ones(4), torch.empty(4)
    assert op_traffic((a, b), {"out": target}, target) == (32, 16)
    assert op_traffic((a, b), {}, a + b) == (32, 16)
