"""patsearch.compile_options: KEY=VALUE parsing, the check against torch._inductor.config, and global setting."""
import pytest
import torch._inductor.config as inductor_config

from patsearch.compile_options import (
    CUDA_TRAIN_DEFAULTS,
    apply_globally,
    check_compile_options,
    parse_compile_option,
    with_device_defaults,
)


@pytest.mark.parametrize("text, parsed", [
    ("combo_kernels=true", ("combo_kernels", True)),
    ("max_fusion_size = 32", ("max_fusion_size", 32)),
    ("triton.descriptive_names=original_aten", ("triton.descriptive_names", "original_aten")),
])
def test_values_are_yaml_scalars(text, parsed):
    assert parse_compile_option(text) == parsed


@pytest.mark.parametrize("text", ["combo_kernels", "=true", ""])
def test_a_pair_without_a_name_or_an_equals_sign_is_refused(text):
    with pytest.raises(ValueError, match="a compile option is KEY=VALUE"):
        parse_compile_option(text)


def test_check_accepts_ints_for_float_options_and_returns_a_plain_dict():
    assert check_compile_options({"max_fusion_size": 32, "combo_kernels": False}) == {
        "max_fusion_size": 32, "combo_kernels": False}
    with pytest.raises(ValueError, match="takes true or false, got 1"):
        check_compile_options({"combo_kernels": 1})


def test_apply_globally_sets_nested_options():
    # Inductor's own patch restores them (pytest's monkeypatch deletes a config module's attribute on undo)
    with inductor_config.patch({"combo_kernels": False, "triton.persistent_reductions": True}):
        assert apply_globally({"combo_kernels": True, "triton.persistent_reductions": False}) == {
            "combo_kernels": True, "triton.persistent_reductions": False}
        assert inductor_config.combo_kernels is True and inductor_config.triton.persistent_reductions is False
    assert inductor_config.combo_kernels is False
    with pytest.raises(ValueError, match="no option 'nope'"):
        apply_globally({"nope": 1})


def test_cuda_training_gets_combo_kernels_unless_the_run_says_otherwise():
    assert with_device_defaults({}, "cuda") == {"combo_kernels": True}
    assert with_device_defaults({"max_autotune": True}, "cuda") == {"combo_kernels": True, "max_autotune": True}
    assert with_device_defaults({"combo_kernels": False}, "cuda") == {"combo_kernels": False}
    assert with_device_defaults({}, "cpu") == {}
    assert with_device_defaults({"max_autotune": True}, "cpu") == {"max_autotune": True}
    check_compile_options(CUDA_TRAIN_DEFAULTS)  # the defaults are real Inductor options of this torch
