"""Optuna's own warnings stay out of a search's output: PED-ANOVA's per-parameter notes when the importances plot
is drawn, and GPSampler's note on every conditional parameter of every trial."""
import importlib.util
import logging
import warnings

import optuna
import pytest

from patsearch.search.optuna_noise import quiet_optuna
from patsearch.search.samplers import make_sampler


def _conditional(trial) -> float:
    """A space like PATNet's: a parameter that exists only for one value of another."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.suggest_categorical("attention", [True, False]):
        return x + trial.suggest_int("heads", 1, 8) / 10
    return x


def _importance_warnings(quiet: bool) -> list[str]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # one trial of five with attention: its heads are a regime of one trial, as in most short searches
    for i in range(5):
        study.enqueue_trial({"x": i / 5, "attention": i == 0, "heads": 4})
    study.optimize(_conditional, n_trials=5)
    with warnings.catch_warnings(record=True) as caught:  # the filters are restored afterwards
        warnings.simplefilter("always")
        if quiet:
            quiet_optuna()
        optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    return [str(w.message) for w in caught]


def test_importance_notes_are_silenced():
    assert _importance_warnings(quiet=False), "the case should make PED-ANOVA warn"
    assert _importance_warnings(quiet=True) == []


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="GPSampler needs scipy (the gp extra)")
def test_the_gp_sampler_does_not_warn_about_conditional_parameters():
    def independent_notes(sampler) -> list[str]:
        collect = _Collect()
        logging.getLogger("optuna").addHandler(collect)
        try:
            optuna.create_study(sampler=sampler).optimize(_conditional, n_trials=6)
        finally:
            logging.getLogger("optuna").removeHandler(collect)
        return [m for m in collect.messages if "sampled independently" in m]

    assert independent_notes(optuna.samplers.GPSampler(seed=0, n_startup_trials=3)), "the case should warn"
    assert independent_notes(make_sampler("gp", seed=0, n_trials=9)) == []
