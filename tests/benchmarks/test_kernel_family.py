"""benchmarks/train_profile.py's kernel families: the profile's conclusions rest on them, so real kernel names
from an H200 profile (docs/results/gpu-speed/compiled-gap-2026-12-01) must land in the right family."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import train_profile  # noqa: E402

NAMES = {
    "triton_red_fused__native_batch_norm_legit_functional_native_batch_norm_backward_threshold_backward_125":
        "inductor_reduction",
    "triton_per_fused__native_batch_norm_legit_functional_add_cat_convolution_backward": "inductor_reduction",
    "triton_poi_fused__native_batch_norm_legit_functional_relu_23": "inductor_pointwise",
    "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::direct_copy_kernel_":
        "copy",
    "sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_":
        "conv_gemm",
    "sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize128x128x8_stage3_warpsize2x2x1_ffma_aligna4_alignc4_execute_kern":
        "conv_gemm",
    "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_TNT": "conv_gemm",
    "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, false": "conv_gemm",
    "void nhwcAddPaddingKernel<__nv_bfloat16, __nv_bfloat16, float, true, (cudnnKernelDataType_t)0>(int": "copy",
    "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::FusedOpti":
        "optimizer",
    "_stats_fwd_kernel": "patsearch_triton",
    "_fc2_gate_kernel": "patsearch_triton",
}


@pytest.mark.parametrize("name,family", sorted(NAMES.items()))
def test_kernel_family(name: str, family: str) -> None:
    assert train_profile.kernel_family(name) == family


def test_family_table_sums_and_counts_small_kernels() -> None:
    table = train_profile.family_table({"triton_poi_fused_relu_1": [3.0, 12.0], "nvjet_sm90_x": [100.0]}, steps=2)
    assert list(table) == ["conv_gemm", "inductor_pointwise"]  # most device time first
    poi = table["inductor_pointwise"]
    assert poi["calls_per_step"] == 1.0 and poi["ms_per_step"] == pytest.approx(0.0075)
    assert poi["under_5us_per_step"] == 0.5 and poi["under_10us_per_step"] == 0.5
