"""The one registry of forms: every user (counting, profiler protocol, bench, the speed scripts) takes its names
from it, each form builds the function it names, and unknown names are refused with the registry's names."""
import pytest
import timm
import torch
from test_fuse import CONFIGS

from patsearch.counting import count_flops
from patsearch.models import create_model, fuse_model
from patsearch.models.forms import (
    ALIASES,
    BENCH_FORMS,
    FORMS,
    LAYER_FORMS,
    FormError,
    build_form,
    form_names,
    get_form,
    is_accelerated,
)
from patsearch.models.statistics import randomize_statistics
from patsearch.profiler.bench_options import CHOICES, BenchOptions
from patsearch.profiler.devices import DeviceError, Protocol


def test_every_vocabulary_is_a_subset_of_the_registry():
    assert set(CHOICES) == set(form_names(measurable_only=True)) and CHOICES[:len(BENCH_FORMS)] == BENCH_FORMS
    assert set(LAYER_FORMS) <= set(FORMS) and set(BENCH_FORMS) <= set(FORMS)
    assert set(ALIASES.values()) <= set(FORMS) and not set(ALIASES) & set(FORMS)
    assert "table6" in FORMS and not FORMS["table6"].measurable
    assert all(f.description for f in FORMS.values())


def test_deploy_is_another_name_for_the_fused_form():
    """``deploy`` and ``fused`` name one form: accepted everywhere a form is named, recorded as ``fused``."""
    assert get_form("deploy") is FORMS["fused"]
    assert Protocol("throughput", 1, form="deploy") == Protocol("throughput", 1, form="fused")
    assert Protocol("throughput", 1, form="deploy").slug().endswith("-fused")
    assert BenchOptions("cpu", forms="trained,deploy").forms == ("trained", "fused")
    model = create_model(CONFIGS["patnet"]).eval()
    assert count_flops(model, 64, form="deploy") == count_flops(model, 64, form="fused")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(build_form(model, "deploy")(x), build_form(model, "fused")(x))


@pytest.mark.parametrize("name", [n for n in FORMS if n != "table6"])
def test_every_form_computes_the_trained_function(name):
    generator = torch.Generator().manual_seed(11)
    for model in (create_model(CONFIGS["patnet"]).double().eval(),
                  timm.create_model("fasternet_t0", num_classes=10).double().eval()):
        randomize_statistics(model, generator)
        built = build_form(model, name)
        x = torch.randn(2, 3, 64, 64, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(built(x), model(x), rtol=1e-8, atol=1e-8)
        assert is_accelerated(built) == (name in ("fast", "fast_kernels"))


def test_fast_form_counts_like_the_fused_form():
    model = create_model(CONFIGS["patnet"]).eval()
    assert count_flops(model, 64, form="fast") == count_flops(model, 64, form="fused") \
        == count_flops(fuse_model(model), 64, form="fused")


def test_unknown_forms_are_refused_with_the_registry_names():
    names = ", ".join(FORMS)
    with pytest.raises(FormError, match=f"unknown form 'deployment'; choose from {names}$"):
        get_form("deployment")
    with pytest.raises(ValueError, match="unknown form 'deployment'; choose from trained"):
        count_flops(create_model(CONFIGS["patnet"]), 64, form="deployment")
    with pytest.raises(DeviceError, match=r"--form: form 'fast' is not available here; choose from fused, trained"):
        Protocol("throughput", 1, form="fast")
    with pytest.raises(DeviceError, match=r"--form: unknown form 'x'"):
        Protocol("throughput", 1, form="x")


def test_bench_refuses_an_unknown_form_before_building_anything():
    from patsearch.profiler.bench import run_bench

    with pytest.raises(DeviceError, match="--forms: .*'table6' is not available here; choose from trained, fused"):
        run_bench("cpu", models=["patnet_t0"], forms=["table6"], progress=False)
    with pytest.raises(DeviceError, match="--forms: unknown form 'nope'"):
        run_bench("cpu", models=["patnet_t0"], forms=["nope"], progress=False)


def test_speed_scripts_columns_are_registry_forms():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import speed_common
    finally:
        sys.path.pop(0)
    assert all(form in FORMS for _, form in speed_common.COLUMNS.values())
    with pytest.raises(ValueError, match="unknown form 'patnet-x'; choose from patnet-deploy"):
        speed_common.build_forms("t0", ("patnet-x",))
