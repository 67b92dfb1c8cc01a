import math

import pytest

from patsearch.train.loop import _step_resolution, resolve_recipe
from patsearch.train.recipe import Recipe, RecipeError, default_recipe_for, load_recipe, recipe_names

# Table 7 of the paper, typed in from the table (not from the recipe files):
# batch, lr, weight decay, stochastic depth, gradient clip, RandAugment magnitude, mixup alpha
TABLE7 = {
    "patnet_t0": (4096, 0.004, 0.005, 0.0, None, None, 0.05),
    "patnet_t1": (4096, 0.004, 0.01, 0.02, None, 3, 0.1),
    "patnet_t2": (4096, 0.004, 0.02, 0.05, None, 5, 0.1),
    "patnet_s": (4096, 0.004, 0.03, 0.1, None, 7, 0.3),
    "patnet_m": (2048, 0.002, 0.05, 0.2, 1.0, 7, 0.5),
    "patnet_l": (2048, 0.002, 0.05, 0.3, 0.01, 7, 0.7),
}


def test_shipped_recipes_are_the_variants_and_the_proxies():
    assert recipe_names() == sorted([*TABLE7, "proxy", "proxy_cpu"])


@pytest.mark.parametrize("name", sorted(TABLE7))
def test_recipe_files_equal_table7(name):
    batch, lr, wd, drop_path, clip, ra_m, mixup = TABLE7[name]
    r = load_recipe(name)
    assert (r.batch_size, r.lr, r.weight_decay, r.drop_path, r.clip_grad, r.mixup_alpha) == (
        batch, lr, wd, drop_path, clip, mixup)
    assert r.rand_augment == (None if ra_m is None else f"rand-m{ra_m}-mstd0.5-inc1")
    # columns shared by all variants
    assert (r.epochs, r.warmup_epochs, r.optimizer, r.betas, r.label_smoothing, r.cutmix_alpha) == (
        300, 20, "adamw", (0.9, 0.999), 0.1, 1.0)
    assert (r.warmup_lr, r.min_lr, r.mixup_switch_prob, r.hflip, r.color_jitter) == (1e-6, 1e-5, 0.5, 0.5, 0.0)
    assert r.interpolation == "bicubic" and r.amp is True and r.warmup_prefix is True
    assert r.multi_scale == "random" and r.multi_scale_sizes == (128, 160, 192, 224, 256, 288)
    assert r.multi_scale_schedule == ((0, 192), (280, 224))
    assert (r.test_resolution, r.test_crop_pct) == (224, 0.9)


def test_lr_scales_linearly_with_the_global_batch():
    assert load_recipe("patnet_t0").scaled_lr(256) == pytest.approx(0.004 * 256 / 4096)
    assert load_recipe("patnet_m").scaled_lr(1024) == pytest.approx(0.001)


def test_short_runs_keep_the_shape_of_the_schedule():
    r = load_recipe("patnet_t2").with_epochs(30)
    assert r.epochs == 30 and r.warmup_epochs == pytest.approx(2.0)
    assert r.multi_scale_schedule == ((0, 192), (28, 224))


def test_both_multi_scale_readings():
    released = load_recipe("patnet_t2").replace(multi_scale="schedule")
    assert [released.resolution_at(e) for e in (0, 279, 280, 299)] == [192, 192, 224, 224]
    table7 = load_recipe("patnet_t2")
    assert table7.resolution_at(5) == 288  # loads at the largest size, each step shrinks to its draw
    draws = [_step_resolution(table7, 0, 0, s) for s in range(60)]
    assert set(draws) == set(table7.multi_scale_sizes)  # all six sizes occur
    assert draws == [_step_resolution(table7, 0, 0, s) for s in range(60)]  # same on every rank
    assert _step_resolution(table7.replace(multi_scale="none"), 0, 0, 0) is None


def test_the_largest_training_size_of_each_multi_scale_reading():
    table7 = load_recipe("patnet_t2")
    assert table7.largest_resolution == 288  # random: the largest of the sizes
    assert table7.replace(multi_scale="schedule").largest_resolution == 224  # the schedule's largest phase
    assert table7.replace(multi_scale="none", resolution=160).largest_resolution == 160


def test_run_overrides():
    r = resolve_recipe(None, "fasternet_t1", epochs=10, resolution=64)
    assert r.name == "patnet_t1" and r.epochs == 10 and (r.resolution, r.test_resolution) == (64, 64)
    assert r.multi_scale == "none"
    assert default_recipe_for("custom", embed_dim=90) == "patnet_s"
    assert default_recipe_for("patnet_l") == "patnet_l"


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "r.yaml"
    r = load_recipe("patnet_m").with_epochs(7).replace(name="mine")
    path.write_text(r.to_yaml())
    assert load_recipe(path) == r


@pytest.mark.parametrize("text, message", [
    ("epochs: 0\n", "epochs must be a positive integer"),
    ("lr: fast\n", "lr must be a non-negative number"),
    ("learning_rate: 0.1\n", "unknown field(s) learning_rate"),
    ("multi_scale: sometimes\n", "multi_scale must be one of"),
    ("resolution: 100\n", "multiples of 32"),
    ("rand_augment: m9\n", "timm RandAugment string"),
    ("warmup_prefix: sometimes\n", "warmup_prefix must be true or false"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
])
def test_bad_recipes_get_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(path)


def test_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(RecipeError, match="patnet_t0"):
        load_recipe("patnet_xl")


def test_recipe_validation_in_code():
    with pytest.raises(RecipeError, match="warmup_epochs"):
        Recipe(epochs=5, warmup_epochs=20)


def test_proxy_recipes_scale_lr_by_the_square_root_and_use_the_tensor_path():
    gpu, cpu = load_recipe("proxy"), load_recipe("proxy_cpu")
    for rec in (gpu, cpu):
        assert rec.lr_scaling == "sqrt" and rec.uses_tensor_cache
    assert gpu.scaled_lr(512) == pytest.approx(2e-3) and gpu.scaled_lr(2048) == pytest.approx(4e-3)
    assert cpu.scaled_lr(64) == pytest.approx(2.5e-3) and cpu.scaled_lr(256) == pytest.approx(5e-3)
    # the two differ only in length, resolution, batch and lr
    differing = {k for k, v in gpu.to_dict().items() if cpu.to_dict()[k] != v}
    assert differing <= {"name", "epochs", "resolution", "batch_size", "lr", "multi_scale_sizes",
                         "multi_scale_schedule", "test_resolution"}
    assert not load_recipe("patnet_t0").uses_tensor_cache


@pytest.mark.parametrize("changes, message", [
    ({"crop": "center"}, "crop must be one of random-resized, pad"),
    ({"lr_scaling": "cubic"}, "lr_scaling must be one of linear, sqrt"),
    ({"crop": "pad", "rand_augment": "rand-m9-mstd0.5"}, "crop: pad .* supports flip and mixup only"),
    ({"crop": "pad", "multi_scale": "random"}, "crop: pad .* supports flip and mixup only"),
])
def test_crop_and_lr_scaling_are_validated(changes, message):
    with pytest.raises(RecipeError, match=message):
        Recipe(**changes)


def _lrs(recipe: Recipe, steps_per_epoch: int = 10) -> list[float]:
    """The lr at every step of a run under ``recipe``, as the trainer's scheduler sets it."""
    import torch

    from patsearch.train.engine import build_scheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = build_scheduler(opt, recipe, recipe.lr, steps_per_epoch)
    out = []
    for step in range(recipe.epochs * steps_per_epoch):
        sched.step_update(step)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_the_paper_schedule_decays_from_the_peak_once_warm_up_ends():
    rec = load_recipe("patnet_t2").with_epochs(30).replace(lr=4e-3)  # warm-up: 2 of 30 epochs, 20 steps
    lrs = _lrs(rec)
    warm, cosine = lrs[:20], lrs[20:]
    assert warm[0] == pytest.approx(1e-6) and all(a < b for a, b in zip(warm, warm[1:]))
    assert cosine[0] == pytest.approx(4e-3) and all(a >= b for a, b in zip(cosine, cosine[1:]))
    assert cosine[-1] == pytest.approx(1e-5, rel=0.05)  # cosine reaches min_lr at the run's end
    assert max(lrs) == pytest.approx(4e-3)


def test_the_proxy_schedule_keeps_one_cosine_over_the_run():
    # the proxy's shape is that of every proxy score and reference in the docs: the lr steps down at warm-up's end
    rec = load_recipe("proxy").with_epochs(100)  # warm-up: 20 of 100 epochs
    lrs = _lrs(rec)
    assert rec.warmup_prefix is False
    assert lrs[200] == pytest.approx(2e-3 * (1 + math.cos(math.pi * 0.2)) / 2, rel=1e-3)  # not the peak
    assert lrs[199] > lrs[200] * 1.09
