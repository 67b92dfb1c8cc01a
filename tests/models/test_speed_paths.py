"""The fast inference path (each block family's fast form, forms.accelerate, peers, inference) computes what the
trained model computes in eval mode, on the CPU path and, through ``gpu_path()``, on the GPU path's formulation."""
import zlib

import pytest
import timm
import torch
import torch.nn as nn
from test_fuse import CONFIGS, relative_errors

from patsearch.arch import MIXERS, SPATIAL_ATTENTION, ArchConfig
from patsearch.kernels.reference import channel_stats
from patsearch.models import create_model, fuse_model
from patsearch.models.attention import PartialSelfAttention
from patsearch.models.channel_attention import PartialChannelAttentionDeploy
from patsearch.models.fast_ops import PatchifyConv, gpu_path, on_gpu_path, tokens
from patsearch.models.forms import accelerate, deployment_fast, is_accelerated
from patsearch.models.inference import prepare_inference
from patsearch.models.layers import FastBlock
from patsearch.models.peers import fasternet_fast, fuse_fasternet
from patsearch.models.statistics import randomize_statistics


def _rel(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return ((expected - actual).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_path_equals_trained(name, dtype, tolerance):
    for resolution, rel in relative_errors(name, dtype, accelerate, 7 + len(name)).items():
        assert rel <= tolerance, f"{name} at {resolution}"


def test_fast_path_replaces_the_blocks_and_leaves_the_input_alone():
    model = create_model(CONFIGS["patnet"]).eval()
    deployed = fuse_model(model)
    n_modules = len(list(deployed.modules()))
    fast = accelerate(deployed)
    kinds = {type(layer.mixer) for stage in fast.stages for layer in stage if isinstance(layer, FastBlock)}
    assert {PartialChannelAttentionDeploy, PartialSelfAttention} <= kinds
    assert is_accelerated(fast) and not is_accelerated(deployed)
    assert len(list(deployed.modules())) == n_modules  # the deployment model was copied, not rewritten
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _rel(deployed(x), fast(x)) <= 1e-5


def test_zero_gate_scale_is_not_divided_into_the_gate():
    """A BN after PAT_sp's gating with a zero weight cannot have its scale divided out of the gate conv."""
    model = create_model(ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), num_classes=10)).double().eval()
    randomize_statistics(model, torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.stages[0][0].mlp.gate_norm.weight[0] = 0.0
    fast = accelerate(model)
    assert not fast.stages[0][0].tail.scaled and fast.stages[1][1].tail.scaled
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert _rel(model(x), fast(x)) <= 1e-10


def test_channel_stats_match_std_mean():
    x = torch.randn(3, 40, 9, 7, dtype=torch.float64) * 3 + 5  # a large mean stresses cancellation
    mean, std = channel_stats(x[:, 8:], two_pass=True)
    ref_std, ref_mean = torch.std_mean(x[:, 8:], dim=(2, 3))
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(std, ref_std)


def test_channels_last_input_gives_the_same_output():
    model = create_model(CONFIGS["patnet"]).eval()
    randomize_statistics(model, torch.Generator().manual_seed(4))
    fast = accelerate(model)
    x = torch.randn(2, 3, 64, 96)
    fn, x_cl = prepare_inference(fast, x.contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        assert _rel(model(x), fn(x_cl)) <= 1e-4


@pytest.mark.parametrize("mode", ["slicing", "split_cat"])
def test_fasternet_eager_deployment_form(mode):
    peer = timm.create_model("fasternet_t0", num_classes=10).eval()
    randomize_statistics(peer, torch.Generator().manual_seed(5))
    fused = fuse_fasternet(peer, mode)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _rel(peer(x), fused(x)) <= 1e-4
        assert _rel(fuse_model(peer)(x), fused(x)) <= 1e-4


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="takes a PATNet"):
        accelerate(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="BatchNorm was left"):
        fuse_fasternet(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)))
    with pytest.raises(ValueError, match="CUDA input"):
        prepare_inference(nn.Identity(), torch.zeros(1, 3, 8, 8), cuda_graph=True)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_token_gemm_path_equals_trained(dtype, tolerance):
    """The channels-last GEMM path (bias and ReLU in the epilogue; CUDA only by default) run on the CPU."""
    for name in ("patnet", "attention_everywhere"):
        model = create_model(CONFIGS[name].replace(act="relu")).to(dtype).eval()
        randomize_statistics(model, torch.Generator().manual_seed(6))
        x = torch.randn(2, 3, 64, 96, dtype=dtype)
        fn, x_cl = prepare_inference(model, x.contiguous(memory_format=torch.channels_last), fast_path=True)
        with gpu_path(), torch.no_grad():
            assert tokens(x_cl) is not None
            assert _rel(model(x), fn(x_cl)) <= tolerance, name


def test_fasternet_with_the_same_generic_tricks():
    peer = timm.create_model("fasternet_t0", num_classes=10).eval()
    randomize_statistics(peer, torch.Generator().manual_seed(8))
    quick = fasternet_fast(peer).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    with gpu_path(), torch.no_grad():
        assert _rel(peer(x), quick(x.contiguous(memory_format=torch.channels_last))) <= 1e-4
        assert _rel(peer(x), quick(x)) <= 1e-4  # NCHW input: the plain path


def test_fast_form_has_the_deployment_form_size_and_flops():
    """What `patsearch bench --forms fast` counts: the same parameters and FLOPs as the deployment form."""
    from patsearch.counting import count_flops, count_params

    for name in ("patnet_t0", "fasternet_t0"):
        model = create_model(name, num_classes=10).eval()
        fused, quick = fuse_model(model), deployment_fast(model)
        assert count_params(quick) == count_params(fused)
        assert count_flops(quick, 64) == count_flops(fused, 64)
        assert not any(p.requires_grad for p in quick.parameters())


def test_patchified_stem_equals_the_conv():
    conv = nn.Conv2d(3, 8, 4, 4).double()
    stem = PatchifyConv(conv)
    for h, w in ((32, 48), (34, 37)):  # the second leaves a ragged border
        x = torch.randn(2, 3, h, w, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
        with gpu_path():
            torch.testing.assert_close(stem(x), conv(x))
    with pytest.raises(ValueError, match="stride == kernel"):
        PatchifyConv(nn.Conv2d(3, 8, 3, 1))


def test_one_by_one_stage_has_zero_spread_like_the_trained_model():
    """At 32 px stage 4 is 1x1: the Gaussian SE counts its spread as 0 (no NaN), and so must the fast path."""
    model = create_model(ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pat_ch",) * 4,
                                    num_classes=10)).double().eval()
    randomize_statistics(model, torch.Generator().manual_seed(9))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = model(x), accelerate(model)(x)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9)


def test_gpu_path_switch_is_scoped():
    x = torch.zeros(1, 4, 2, 2).contiguous(memory_format=torch.channels_last)
    assert not on_gpu_path(x) and tokens(x) is None
    with gpu_path():
        assert on_gpu_path(x) and tokens(x).shape == (4, 4)
        with gpu_path(False):
            assert not on_gpu_path(x)
        assert on_gpu_path(x)
    assert not on_gpu_path(x)


def _one_mixer_config(mixer: str, spatial: str) -> ArchConfig:
    return ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=(mixer,) * 4, spatial=(spatial,) * 4, n_div=2,
                      num_heads=2, act="relu", num_classes=10)


@pytest.mark.parametrize("spatial", list(SPATIAL_ATTENTION))
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_every_mixer_fast_form_equals_trained_on_both_paths(mixer, spatial):
    """Every mixer and spatial attention: fast == trained (eval), on the CPU path and on the GPU path's
    formulation (``gpu_path()``), NCHW and channels-last, including a 1x1 last stage (32 px)."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{mixer}/{spatial}".encode()))
    model = create_model(_one_mixer_config(mixer, spatial)).double().eval()
    randomize_statistics(model, generator)
    fast = accelerate(model)
    for resolution in ((64, 96), (32, 32)):
        x = torch.randn(2, 3, *resolution, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            expected = model(x)
            for forced in (False, True):
                with gpu_path(forced):
                    for layout in (torch.contiguous_format, torch.channels_last):
                        actual = fast(x.contiguous(memory_format=layout))
                        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9,
                                                   msg=f"{mixer}/{spatial} gpu_path={forced} {layout}")


def test_fast_blocks_cover_the_paper_mixers():
    """PAT_ch (gauss, srm) and PAT_sf get fast blocks; the rest stay deployment modules."""
    kinds = {}
    for mixer in MIXERS:
        fast = accelerate(create_model(_one_mixer_config(mixer, "partial")).eval())
        block = fast.stages[0][0]
        kinds[mixer] = type(block.mixer) if isinstance(block, FastBlock) else None
    assert kinds["pat_ch"] is PartialChannelAttentionDeploy and kinds["pat_ch_srm"] is PartialChannelAttentionDeploy
    assert kinds["pat_sf"] is PartialSelfAttention
    assert all(kinds[m] is None for m in ("pconv", "conv", "dwconv", "pat_sf_full", "pat_ch_full", "pat_ch_se"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_cuda_fast_path_equals_trained(mixer):
    """On a GPU: the real CUDA kernels (cuDNN conv + ReLU, token GEMMs, the pinned SDPA) against the trained
    model in eval mode, float32 without TF32, NCHW and channels-last."""
    generator = torch.Generator().manual_seed(zlib.crc32(mixer.encode()))
    model = create_model(_one_mixer_config(mixer, "partial")).eval()
    randomize_statistics(model, generator)
    x = torch.randn(4, 3, 64, 96, generator=generator)
    with torch.no_grad():
        expected = model(x)
    model = model.cuda()
    fast = accelerate(model)
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for layout in (torch.contiguous_format, torch.channels_last):
            with torch.no_grad():
                actual = fast.to(memory_format=layout)(x.cuda().contiguous(memory_format=layout)).cpu()
            assert _rel(expected, actual) <= 1e-4, f"{mixer} {layout}"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
