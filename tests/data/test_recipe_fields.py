"""What data/ reads from a recipe (patsearch.data.recipe_fields) is what a training recipe has: the protocol and
the trainer's Recipe cannot drift apart unnoticed."""
from types import SimpleNamespace

from patsearch.data.recipe_fields import AugmentRecipe
from patsearch.train.recipe import load_recipe, recipe_names


def test_every_shipped_recipe_has_the_fields_data_reads():
    for name in recipe_names():
        assert isinstance(load_recipe(name), AugmentRecipe), name


def test_a_recipe_without_them_is_not_one():
    fields = {k: None for k in AugmentRecipe.__annotations__}
    assert not isinstance(SimpleNamespace(**fields), AugmentRecipe)  # no resolution_at or uses_tensor_cache
    assert not isinstance(SimpleNamespace(uses_tensor_cache=True, resolution_at=lambda e: 32), AugmentRecipe)
