"""The trainer: the paper's recipes, one training loop (also the search's proxy training), DDP, exact resume.

``patsearch.train.train(arch, recipe, ...)`` is the one entry point (see :mod:`patsearch.train.loop`);
``patsearch.train.evaluate_checkpoint`` backs ``patsearch eval``; recipes live in :mod:`patsearch.train.recipe`.
"""
from patsearch.train.evaluate import evaluate_checkpoint
from patsearch.train.loop import TrainingDiverged, train
from patsearch.train.recipe import Recipe, RecipeError, load_recipe, recipe_names

__all__ = ["Recipe", "RecipeError", "TrainingDiverged", "evaluate_checkpoint", "load_recipe", "recipe_names", "train"]
