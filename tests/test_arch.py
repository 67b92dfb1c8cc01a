"""The architecture description: validation, YAML round trip, layer enumeration, name/path resolution."""
import pytest

from patsearch.arch import VARIANTS, ArchConfig, ArchError, LayerSpec, resolve_arch


def test_variants_are_valid_and_named():
    assert list(VARIANTS) == ["patnet_t0", "patnet_t1", "patnet_t2", "patnet_s", "patnet_m", "patnet_l"]
    assert VARIANTS["patnet_t1"].depths == (1, 2, 6, 4)  # the spec's reading, not Table 6's 2-2-6-4 typo
    assert VARIANTS["patnet_l"].widths == (160, 320, 640, 1280)
    assert VARIANTS["patnet_t0"].act == "gelu" and VARIANTS["patnet_t2"].act == "relu"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_yaml_round_trip(tmp_path, name):
    cfg = VARIANTS[name]
    path = cfg.save(tmp_path / f"{name}.yaml")
    assert ArchConfig.load(path) == cfg
    assert resolve_arch(str(path)) == cfg
    assert ArchConfig.from_dict(cfg.to_dict()) == cfg


def test_lists_and_tuples_compare_equal():
    a = ArchConfig(depths=[2, 2, 6, 4], mixers=["pat_ch"] * 3 + ["pat_sf"])
    assert a == VARIANTS["patnet_t2"].replace(drop_path_rate=0.0, name="")
    assert hash(a) == hash(ArchConfig())


def test_partial_ratio_alias():
    assert ArchConfig.from_dict({"partial_ratio": 0.25}).n_div == 4
    with pytest.raises(ArchError, match="partial_ratio must be a number in \\(0, 1\\)"):
        ArchConfig.from_dict({"partial_ratio": 1.5})
    with pytest.raises(ArchError, match="1/n"):
        ArchConfig.from_dict({"partial_ratio": 0.3})


@pytest.mark.parametrize("changes, message", [
    ({"depths": [2, -1, 6, 4]}, r"depths\[1\]: must be a positive integer"),
    ({"depths": [2, 2, 6]}, "depths: must list 4 stages"),
    ({"embed_dim": 0}, "embed_dim: must be a positive integer"),
    ({"embed_dim": 30}, "not divisible by n_div=4"),
    ({"n_div": 1}, "n_div: must be an integer >= 2"),
    ({"mixers": ["pat_ch", "pat_ch", "pat_ch", "transformer"]}, r"mixers\[3\]: unknown mixer 'transformer'"),
    ({"spatial": "sometimes"}, r"spatial\[0\]: unknown spatial attention"),
    ({"act": "tanh"}, "act: unknown activation 'tanh'"),
    ({"num_heads": 5}, "not divisible by num_heads=5"),
    ({"drop_path_rate": 1.5}, r"drop_path_rate: must be in \[0, 1\)"),
    ({"mlp_ratio": -2}, "mlp_ratio: must be a positive number"),
    ({"mlp_ratio": 2.01}, "hidden width .* is not an integer"),
    ({"num_classes": 0}, "num_classes: must be a positive integer"),
    ({"widths": [1, 2, 3, 4]}, "unknown field"),
])
def test_validation_names_the_field(changes, message):
    with pytest.raises(ArchError, match=message):
        ArchConfig.from_dict({**VARIANTS["patnet_t0"].to_dict(), **changes})


def test_bad_yaml_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed_dim: [unclosed\n")
    with pytest.raises(ArchError, match="not valid YAML"):
        ArchConfig.load(bad)
    notamap = tmp_path / "list.yaml"
    notamap.write_text("- 1\n- 2\n")
    with pytest.raises(ArchError, match="expected a mapping"):
        ArchConfig.load(notamap)
    with pytest.raises(ArchError, match="does not exist"):
        resolve_arch(tmp_path / "missing.yaml")
    with pytest.raises(ArchError, match="unknown architecture 'patnet_xl'; known: patnet_t0"):
        resolve_arch("patnet_xl")


def test_wrapped_yaml_is_accepted(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_text("study: demo\narch:\n  embed_dim: 48\n  depths: [1, 2, 6, 4]\n  act: gelu\n")
    cfg = resolve_arch(path)
    assert cfg.embed_dim == 48 and cfg.depths == (1, 2, 6, 4)


def test_layers_enumerate_the_network():
    cfg = VARIANTS["patnet_t2"]
    layers = cfg.layers()
    kinds = [spec.kind for spec in layers]
    assert kinds.count("block") == sum(cfg.depths) and kinds.count("merge") == 3
    assert kinds[0] == "stem" and kinds[-1] == "head"
    shapes = [shape for spec, shape in cfg.layer_inputs(224) if spec.kind != "block"]
    assert shapes == [(3, 224, 224), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]


def test_layer_keys_distinguish_cost_relevant_fields():
    base = LayerSpec("block", 64, 64, mixer="pat_ch", spatial="partial", n_div=4, mlp_ratio=2.0, act="relu",
                     num_heads=4)
    variants = [base, LayerSpec(**{**base.__dict__, "mixer": "pconv"}),
                LayerSpec(**{**base.__dict__, "spatial": "none"}), LayerSpec(**{**base.__dict__, "n_div": 2}),
                LayerSpec(**{**base.__dict__, "mlp_ratio": 3.0}), LayerSpec(**{**base.__dict__, "act": "gelu"})]
    keys = {spec.key(56) for spec in variants} | {base.key(28)}
    assert len(keys) == len(variants) + 1
    # Heads only matter for attention mixers.
    assert base.key(56) == LayerSpec(**{**base.__dict__, "num_heads": 8}).key(56)
    sf = LayerSpec(**{**base.__dict__, "mixer": "pat_sf"})
    assert sf.key(7) != LayerSpec(**{**sf.__dict__, "num_heads": 8}).key(7)


def test_resolution_checks():
    with pytest.raises(ArchError, match="multiple of 32"):
        list(VARIANTS["patnet_t0"].layer_inputs(100))


def test_drop_path_rates_rise_linearly():
    rates = VARIANTS["patnet_l"].drop_path_rates()
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and len(rates) == 29
    assert all(b > a for a, b in zip(rates, rates[1:]))


def test_every_field_is_declared_once_with_its_role():
    from patsearch.arch import FIELDS, FIXED, SEARCH

    assert list(FIELDS) == [f for f in ArchConfig.__dataclass_fields__]
    assert [n for n, s in FIELDS.items() if s.per_stage] == ["depths", "mixers", "spatial"]
    assert [n for n, s in FIELDS.items() if not s.structural] == ["drop_path_rate", "name"]
    assert [n for n, s in FIELDS.items() if s.role == FIXED] == ["drop_path_rate", "num_classes", "head_width"]
    assert [n for n, s in FIELDS.items() if s.role == SEARCH] == ["embed_dim", "depths", "n_div", "mlp_ratio",
                                                                  "mixers", "spatial", "act", "num_heads"]


def test_structure_key_ignores_exactly_the_non_structural_fields():
    t2 = VARIANTS["patnet_t2"]
    key = t2.structure_key(224)
    assert t2.replace(name="other", drop_path_rate=0.3).structure_key(224) == key
    assert t2.structure_key(256) != key
    for change in ({"embed_dim": 48}, {"depths": (2, 2, 6, 5)}, {"n_div": 8}, {"mlp_ratio": 3.0},
                   {"mixers": ("pconv",) * 4}, {"spatial": ("none",) * 4}, {"act": "gelu"}, {"num_heads": 8},
                   {"num_classes": 10}, {"head_width": 1024}):
        assert t2.replace(**change).structure_key(224) != key, change
    assert "name" not in t2.structure() and "drop_path_rate" not in t2.structure()


def test_per_stage_fields_accept_one_value_for_all_stages():
    cfg = ArchConfig.from_dict({"mixers": "pconv", "spatial": "none", "depths": 2})
    assert cfg.mixers == ("pconv",) * 4 and cfg.spatial == ("none",) * 4 and cfg.depths == (2,) * 4
    with pytest.raises(ArchError, match="give either n_div or partial_ratio"):
        ArchConfig.from_dict({"n_div": 4, "partial_ratio": 0.25})


def test_is_arch_ref_tells_patnet_descriptions_from_other_timm_models(tmp_path):
    from patsearch.arch import is_arch_ref

    path = VARIANTS["patnet_t0"].save(tmp_path / "a.yaml")
    assert all(is_arch_ref(r) for r in ("patnet_t0", str(path), path, VARIANTS["patnet_t0"], {"embed_dim": 32}))
    assert not any(is_arch_ref(r) for r in ("fasternet_t0", "resnet50"))
