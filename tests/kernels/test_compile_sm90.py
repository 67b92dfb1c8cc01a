"""The interpreter runs kernels with NumPy semantics and misses compile-time errors (types of loop-carried values,
constexpr misuse, layouts). Compile every kernel for an H100/H200 (sm_90) down to a cubin, without a GPU, in a
subprocess where TRITON_INTERPRET is unset, for the bf16 channels-last specialisation the fast paths use."""
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from patsearch.kernels import _triton as K

FLOAT_PARTIALS = {"pmean_ptr", "pm2_ptr", "pgx_ptr", "pg_ptr", "pw_ptr", "ps_ptr", "pt_ptr"}
CHANNEL_STRIDES = {"sxc", "syc", "sgc", "sdc", "szc", "src"}  # 1 in channels-last: specialised as in a real launch
KERNELS = {
    "_stats_fwd_kernel": [dict(FINAL=True, BLOCK_C=64, BLOCK_HW=64), dict(FINAL=False, BLOCK_C=64, BLOCK_HW=64)],
    "_stats_combine_kernel": [dict(BLOCK_C=64)],
    "_stats_bwd_kernel": [dict(BLOCK_C=64, BLOCK_HW=64)],
    "_scale_fwd_kernel": [dict(HAS_SCALE=True, HAS_SHIFT=True, BLOCK_C=64, BLOCK_HW=64),
                          dict(HAS_SCALE=False, HAS_SHIFT=False, BLOCK_C=128, BLOCK_HW=32)],
    "_scale_bwd_kernel": [dict(HAS_SCALE=True, BLOCK_C=64, BLOCK_HW=64)],
    "_spatial_fwd_kernel": [dict(HAS_SCALE=True, HAS_SHIFT=True, HAS_RESIDUAL=True, BLOCK_C=256, BLOCK_HW=16),
                            dict(HAS_SCALE=False, HAS_SHIFT=False, HAS_RESIDUAL=False, BLOCK_C=32, BLOCK_HW=128)],
    "_spatial_bwd_kernel": [dict(HAS_SCALE=True, BLOCK_C=32, BLOCK_HW=128),
                            dict(HAS_SCALE=False, BLOCK_C=512, BLOCK_HW=8)],
    "_gbn_affine_fwd_kernel": [dict(BLOCK_B=32, BLOCK_C=128)],
    "_gbn_affine_bwd_kernel": [dict(BLOCK_B=32, BLOCK_C=128)],
    # bf16 tensor-core dots (DOT_FP32 is the interpreter's workaround), a 128-wide row and the widest, 512
    "_fc2_gate_kernel": [dict(HAS_SCALE=True, HAS_SHIFT=True, DOT_FP32=False, BLOCK_M=64, BLOCK_N=128, BLOCK_K=64),
                         dict(HAS_SCALE=False, HAS_SHIFT=False, DOT_FP32=False, BLOCK_M=32, BLOCK_N=512,
                              BLOCK_K=64)],
}
# The gated BN's (B, C) kernels: the gate (and its gradient) bf16 under autocast, every other pointer float32.
BF16_ONLY = {"_gbn_affine_fwd_kernel": {"g_ptr"}, "_gbn_affine_bwd_kernel": {"g_ptr", "dg_ptr"}}
FLOAT_SCALARS = {"within", "eps"}
done = []
for name, variants in KERNELS.items():
    fn = getattr(K, name)
    for consts in variants:
        consts = dict(consts)
        sig = {}
        for p in fn.params:
            if p.name in consts:
                sig[p.name] = "constexpr"
            elif p.name in CHANNEL_STRIDES:
                sig[p.name] = "constexpr"
                consts[p.name] = 1
            elif p.name.endswith("_ptr") and name in BF16_ONLY:
                sig[p.name] = "*bf16" if p.name in BF16_ONLY[name] else "*fp32"
            elif p.name.endswith("_ptr"):
                sig[p.name] = "*fp32" if p.name in FLOAT_PARTIALS else "*bf16"
            elif p.name.startswith("inv_") or p.name in FLOAT_SCALARS:
                sig[p.name] = "fp32"
            else:
                sig[p.name] = "i32"
        kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=GPUTarget("cuda", 90, 32))
        assert kernel.asm["cubin"], name
        done.append(name)
print(json.dumps(done))
'''


def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")  # compile for real, not from a previous run's cache
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(compiled) == 15 and set(compiled) == {
        "_stats_fwd_kernel", "_stats_combine_kernel", "_stats_bwd_kernel", "_scale_fwd_kernel", "_scale_bwd_kernel",
        "_spatial_fwd_kernel", "_spatial_bwd_kernel", "_gbn_affine_fwd_kernel", "_gbn_affine_bwd_kernel",
        "_fc2_gate_kernel"}
