"""FasterNet as points of the PATNet family (``FASTERNET_POINTS``): with timm's weights copied in, each computes
what timm's FasterNet computes, in trained and in deployment form; its counts are the spec's FasterNet rows.

The one difference found is in the counter, not the network: fvcore counts timm's global pool
(``adaptive_avg_pool2d``, one FLOP per element of the last feature map) and not our head's ``mean``, so timm's
FLOPs exceed ours by exactly ``widths[-1] * (224 / 32) ** 2`` (asserted below; 0.005% at T0, 0.0005% at L).
The spec's FasterNet FLOPs are timm's module counted: ours are those less the pool's. Parameters are equal.
"""
import pytest
import timm
import torch
import torch.nn as nn

from patsearch.arch import FASTERNET_POINTS
from patsearch.counting import count_flops, count_params
from patsearch.models import create_model, fuse_model
from patsearch.models.peers import fuse_fasternet, load_timm_fasternet_weights
from patsearch.models.statistics import randomize_statistics
from patsearch.space import load_space

# The architecture spec's FasterNet counts (params in M, FLOPs in G at 224 px, printed to these decimals).
SPEC_COUNTS = {
    "fasternet_t0": (3.91, 0.338), "fasternet_t1": (7.60, 0.855), "fasternet_t2": (14.98, 1.911),
    "fasternet_s": (31.18, 4.560), "fasternet_m": (53.52, 8.742), "fasternet_l": (93.47, 15.521),
}
SMALL = ["fasternet_t0", "fasternet_t1", "fasternet_t2"]
LARGE = ["fasternet_s", "fasternet_m", "fasternet_l"]
TOLERANCE = 1e-10  # float64, max error relative to max |output| (measured: 0 trained, 2e-15 deployed)


def _random_timm(name: str, generator: torch.Generator) -> nn.Module:
    """timm's FasterNet in float64 eval mode with weights of unit gain (every branch matters, unlike the
    std-0.02 init) and random BN statistics and affines, so that every copied tensor and every fold shows."""
    model = timm.create_model(name).double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator, dtype=torch.float64)
                                    / fan_in ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator, dtype=torch.float64))
    randomize_statistics(model, generator)
    return model


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("name", SMALL)
def test_copied_weights_compute_what_timm_computes_trained_and_deployed(name):
    generator = torch.Generator().manual_seed(SMALL.index(name) + 7)
    theirs = _random_timm(name, generator)
    ours = create_model(FASTERNET_POINTS[name]).double().eval()
    x = torch.randn(2, 3, 64, 64, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        assert _relative_error(ours(x), theirs(x)) > 0.1  # before the copy the two differ: the check can fail
    load_timm_fasternet_weights(ours, theirs)
    ours_deployed, theirs_deployed = fuse_model(ours), fuse_fasternet(theirs)
    theirs_slicing = fuse_fasternet(theirs, "slicing")
    for _ in range(2):  # fresh inputs each round
        x = torch.randn(2, 3, 64, 64, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            expected, deployed = theirs(x), theirs_deployed(x)
            assert expected.shape == (2, 1000) and expected.abs().max() > 1e-3
            assert _relative_error(ours(x), expected) <= TOLERANCE
            assert _relative_error(ours_deployed(x), deployed) <= TOLERANCE
            assert _relative_error(ours_deployed(x), theirs_slicing(x)) <= TOLERANCE
            assert _relative_error(deployed, expected) <= TOLERANCE  # both deployment forms are the trained function


@pytest.mark.parametrize("name", ["fasternet_t1", "fasternet_t2"])
def test_drop_path_schedule_is_timms(name):
    """Training-mode structure too: the same per-block drop-path rates (linear over all blocks)."""
    ours, theirs = create_model(FASTERNET_POINTS[name]), timm.create_model(name)
    rates = [[getattr(m.drop_path, "drop_prob", 0.0) for m in model.modules() if hasattr(m, "mlp")]
             for model in (ours, theirs)]  # blocks: the modules holding an MLP (Identity: rate 0)
    assert len(rates[0]) == sum(FASTERNET_POINTS[name].depths) and max(rates[0]) > 0
    assert rates[0] == pytest.approx(rates[1], abs=1e-7)


def _check_counts(name: str) -> None:
    arch = FASTERNET_POINTS[name]
    ours, theirs = create_model(arch), timm.create_model(name)
    params, flops, timm_flops = count_params(ours), count_flops(ours, 224), count_flops(theirs, 224)
    spec_params, spec_flops = SPEC_COUNTS[name]
    assert params == count_params(theirs) == pytest.approx(spec_params * 1e6, abs=0.005e6)
    # The spec's FLOPs are timm's module counted (M and L round differently without the pool's FLOPs).
    assert timm_flops == pytest.approx(spec_flops * 1e9, abs=0.0005e9)
    # The counter's one difference: timm's adaptive_avg_pool2d is counted, our head's mean is not.
    assert timm_flops - flops == arch.widths[-1] * 7 * 7
    assert count_flops(ours, 224, form="table6") == flops  # no PAT_sp to merge


@pytest.mark.parametrize("name", SMALL)
def test_params_and_flops_are_the_spec_fasternet_counts(name):
    _check_counts(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_params_and_flops_are_the_spec_fasternet_counts_large(name):
    _check_counts(name)


@pytest.mark.parametrize("name", ["fasternet_t1", "fasternet_t2", "fasternet_s"])
def test_points_of_the_default_space(name):
    """FasterNet-T1, T2 and S are points of spaces/patnet.yaml (T0's width 40 and M/L's 144/192 are not)."""
    space = load_space()
    arch = FASTERNET_POINTS[name]
    candidate = space.to_candidate(space.params_of(arch, 224))
    assert candidate.arch.structure() == arch.structure() and candidate.resolution == 224


def test_a_different_network_is_refused_with_what_differs():
    t0 = create_model(FASTERNET_POINTS["fasternet_t0"])
    with pytest.raises(ValueError, match=r"structure differs .*shape mismatch \['head.proj.weight'"):
        load_timm_fasternet_weights(t0, timm.create_model("fasternet_t1"))
    with pytest.raises(ValueError, match="activation differs: timm FasterNet uses relu, the architecture gelu"):
        load_timm_fasternet_weights(t0, timm.create_model("fasternet_t0", act_layer=nn.ReLU))
    with pytest.raises(ValueError, match="layer scale is not supported"):
        load_timm_fasternet_weights(t0, timm.create_model("fasternet_t0", layer_scale_init_value=1e-6))
    with pytest.raises(ValueError, match="expected a timm FasterNet, got PATNet"):
        load_timm_fasternet_weights(t0, create_model(FASTERNET_POINTS["fasternet_t0"]))
    with pytest.raises(ValueError, match="in trained form"):
        load_timm_fasternet_weights(fuse_model(t0), timm.create_model("fasternet_t0"))
