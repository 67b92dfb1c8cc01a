"""The trainer: the paper's recipes, one training loop (also the search's proxy training), DDP, exact resume.

``Trainer(TrainOptions(...)).fit()`` runs one training (:mod:`patsearch.train.options`, :mod:`patsearch.train.loop`;
what it checks first in :mod:`~patsearch.train.preflight`, shows in :mod:`~patsearch.train.progress` and writes in
:mod:`~patsearch.train.run_dir`);
``patsearch.train.train(arch, recipe, ...)`` is its keyword front door (the search's proxy uses it);
``patsearch.train.evaluate_checkpoint`` (its :class:`EvalOptions`) backs ``patsearch eval``; recipes live in
:mod:`patsearch.train.recipe`.
"""
from patsearch.train.eval_options import EvalOptions, EvalOptionsError
from patsearch.train.evaluate import evaluate_checkpoint
from patsearch.train.loop import Trainer, TrainingDiverged, train
from patsearch.train.options import TrainOptions, TrainOptionsError
from patsearch.train.recipe import Recipe, RecipeError, load_recipe, recipe_names

__all__ = ["EvalOptions", "EvalOptionsError", "Recipe", "RecipeError", "TrainOptions", "TrainOptionsError",
           "Trainer", "TrainingDiverged", "evaluate_checkpoint", "load_recipe", "recipe_names", "train"]
