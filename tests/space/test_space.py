"""Search-space loading, validation errors, size, seeded sampling, Optuna suggestions and layer enumeration."""
import itertools
import math

import numpy as np
import pytest
import yaml

from patsearch.arch import VARIANTS, ArchConfig
from patsearch.space import Candidate, SpaceError, load_space
from patsearch.space.space import SearchSpace


def _tiny_dict():
    return yaml.safe_load(open(load_space("tiny").source))


def test_named_variants_are_points_of_the_default_space():
    space = load_space()
    assert space.name == "patnet-wide"
    for name, arch in VARIANTS.items():
        assert space.contains(arch, 224), name
    assert not space.contains(VARIANTS["patnet_t2"].replace(embed_dim=72), 224)
    assert not space.contains(VARIANTS["patnet_t2"], 256)


def test_size_matches_brute_force_enumeration_of_the_tiny_space():
    space = load_space("tiny")
    networks = set()
    for params in itertools.product(*[d.choices for _, d in space.params()]):
        values = dict(zip([n for n, _ in space.params()], params))
        networks.add(space.to_candidate(space._canonical(values)))
    assert space.size() == len(networks) == 48


def test_size_counts_heads_only_with_attention():
    data = _tiny_dict()
    data["num_heads"] = [2, 4]
    space = SearchSpace.from_dict(data)
    # stage-4 pat_sf: half of the 48 networks use attention, and only those double with two head counts
    assert space.size() == 24 + 24 * 2


def test_sampling_is_seeded_and_stays_in_the_space():
    space = load_space()
    a = [space.sample(np.random.default_rng(3)) for _ in range(1)] + space.samples(20, seed=7)
    b = [space.sample(np.random.default_rng(3)) for _ in range(1)] + space.samples(20, seed=7)
    assert a == b
    assert space.samples(20, seed=8) != a[1:]
    for cand in a:
        assert isinstance(cand, Candidate) and isinstance(cand.arch, ArchConfig)
        assert space.contains(cand.arch, cand.resolution)
    assert len(set(space.samples(48, seed=0))) == 48 == len(set(load_space("tiny").samples(100, seed=0)))


def test_params_round_trip():
    space = load_space()
    cand = space.sample(11)
    params = space.params_of(cand.arch, cand.resolution)
    assert space.to_candidate(params) == cand
    assert space.to_arch(params) == cand.arch


def test_suggest_with_optuna_returns_points_of_the_space():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(15):
        trial = study.ask()
        cand = space.suggest(trial)
        assert space.contains(cand.arch, cand.resolution)
        assert space.to_candidate(trial.params) == cand  # the trial's params name exactly this network
        assert ("num_heads" in trial.params) == ("pat_sf" in cand.arch.mixers)
        assert "resolution" not in trial.params  # one choice: a constant, not a search dimension
        seen.append(cand)
        study.tell(trial, 0.0)
    assert len(set(seen)) > 10


def test_layer_inputs_cover_every_layer_of_sampled_networks():
    space = load_space()
    layers = space.layer_inputs()
    for cand in space.samples(30, seed=1):
        for spec, (c, h, w) in cand.arch.layer_inputs(cand.resolution):
            key = spec.key((h, w))
            assert key in layers
            assert layers[key][1] == (c, h, w)


@pytest.mark.parametrize("change, message", [
    ({"embed_dim": [32, "wide"]}, "field 'embed_dim[1]': must be a positive integer"),
    ({"mixers": [["pconv"], ["pat_ch"], ["patch"], ["pat_sf"]]}, "field 'mixers[2][0]': unknown mixer 'patch'"),
    ({"depths": [[1], [1], {"min": 5, "max": 2}, [1]]}, "field 'depths[2]': max 2 is below min 5"),
    ({"depths": [[1], [1], [1]]}, "field 'depths': must list 4 stages"),
    ({"partial_ratio": [0.3]}, "field 'partial_ratio[0]': must be 1/n"),
    ({"act": ["relu", "tanh"]}, "field 'act[1]': unknown activation 'tanh'"),
    ({"resolution": [100]}, "field 'resolution[0]'"),
    ({"spatial": ["partial", "partial"]}, "field 'spatial[0]'"),
    ({"num_heads": [5]}, "field 'mixers[3]': pat_sf"),
    ({"fixed": {"num_classes": 10, "depth": 3}}, "field 'fixed.depth': unknown field"),
    ({"embed_dim": [16, 16]}, "field 'embed_dim': lists a choice twice"),
    ({"colour": "red"}, "unknown field(s) colour"),
])
def test_validation_errors_name_the_field(change, message):
    data = _tiny_dict()
    data.update(change)
    with pytest.raises(SpaceError, match=None) as info:
        SearchSpace.from_dict(data, source="bad.yaml")
    assert str(info.value).startswith("bad.yaml")
    assert message in str(info.value)


def test_missing_and_unparseable_files(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed_dim: [16\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({k: v for k, v in _tiny_dict().items() if k != "mixers"}))
    with pytest.raises(SpaceError, match="missing field 'mixers'"):
        load_space(missing)


def test_samples_outside_the_space_are_rejected():
    space = load_space("tiny")
    params = space.sample_params(0)
    with pytest.raises(SpaceError, match="embed_dim=24 is not in the space"):
        space.to_candidate({**params, "embed_dim": 24})
    with pytest.raises(SpaceError, match="unknown parameter"):
        space.to_candidate({**params, "width": 3})


def test_default_space_table_size_is_tractable():
    # The grid is chosen so the lookup table stays near 1,500 entries (a table build of minutes, not hours).
    layers = load_space().layer_inputs()
    assert 500 <= len(layers) <= 1500
    assert math.log10(load_space().size()) > 6


def test_the_space_files_carry_the_names_their_tables_are_found_by():
    # profile folders keep a space's tables in a sub-folder of its name, the first space's at their top: the files
    # and the constants agree
    from patsearch.space import DEFAULT_SPACE_NAME, TOP_FOLDER_SPACE_NAME

    assert load_space().name == DEFAULT_SPACE_NAME == "patnet-wide"
    assert load_space("patnet").name == TOP_FOLDER_SPACE_NAME


def test_dimensions_derive_from_the_architecture_fields():
    from patsearch.arch import FIELDS, SEARCH

    space = load_space()
    expected = [p for name, spec in FIELDS.items() if spec.role == SEARCH for p in spec.params(name)]
    assert [n for n, _ in space.params()] == expected + ["resolution"]
    assert expected[:7] == ["embed_dim", "depth1", "depth2", "depth3", "depth4", "n_div", "mlp_ratio"]
    assert expected[7:] == ["mixer1", "mixer2", "mixer3", "mixer4", "spatial1", "spatial2", "spatial3", "spatial4",
                            "act", "num_heads"]  # the Optuna parameter names stored in studies
    assert space.embed_dim == (32, 48, 64, 96, 128, 160) and space.n_div == (2, 4, 8)
    assert space.depths[2] == tuple(range(2, 21)) and space.mixers[3] == ("pconv", "pat_ch", "pat_sf")
    with pytest.raises(AttributeError):
        getattr(space, "drop_path_rate")  # noqa: B009 (a fixed field, not a dimension)


def test_optional_dimensions_default_to_the_architecture_default():
    data = _tiny_dict()
    del data["num_heads"], data["partial_ratio"], data["resolution"]
    space = SearchSpace.from_dict(data)
    assert space.num_heads == (ArchConfig().num_heads,) and space.n_div == (ArchConfig().n_div,)
    assert space.resolution == (224,)


def test_fixed_values_are_checked_by_the_field_declarations():
    data = _tiny_dict()
    data["fixed"] = {"num_classes": 0}
    with pytest.raises(SpaceError, match="field 'fixed.num_classes': must be a positive integer"):
        SearchSpace.from_dict(data, source="bad.yaml")


def test_non_structural_fields_do_not_leave_the_space():
    space = load_space()
    t2 = VARIANTS["patnet_t2"]
    assert space.contains(t2.replace(name="mine", drop_path_rate=0.2), 224)
    assert not space.contains(t2.replace(num_classes=10), 224)  # fixed and structural
