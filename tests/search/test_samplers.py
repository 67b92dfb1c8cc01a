"""The study's sampler and pruner by name (patsearch.search.samplers): a pruner that leaves infeasible trials
(never trained) out of its median, no pruning for Pareto studies, one-line errors for unknown names."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import create_trial

from patsearch.errors import UserError
from patsearch.search.samplers import make_pruner, make_sampler


def _finished(study, n: int, *, over: float) -> None:
    for _ in range(n):
        study.add_trial(create_trial(value=0.9, intermediate_values={2: 0.9, 3: 0.9}, constraints={"latency": over}))


def test_the_pruner_ignores_infeasible_trials():
    pruner = make_pruner("median", multi_objective=False, epochs=4)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    _finished(study, 3, over=0.5)  # infeasible: completed without training
    trial = study.ask()
    trial.report(0.1, 3)
    frozen = study.get_trials(deepcopy=False)[-1]
    assert pruner.pruner.prune(study, frozen)  # the plain median pruner would count them and stop this one
    assert not pruner.prune(study, frozen)
    _finished(study, 3, over=-0.5)  # three trained ones: now the median stands on them
    assert pruner.prune(study, study.get_trials(deepcopy=False)[trial.number])


def test_pareto_studies_and_short_proxies_are_not_pruned():
    assert isinstance(make_pruner("median", multi_objective=True, epochs=4), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("hyperband", multi_objective=False, epochs=1), optuna.pruners.NopPruner)


def test_unknown_names_are_one_line_errors():
    with pytest.raises(UserError, match="choose from median, hyperband, none"):
        make_pruner("asha", multi_objective=False, epochs=4)
    with pytest.raises(UserError, match="choose from tpe, nsga2, gp, random"):
        make_sampler("cmaes", seed=0, n_trials=8)
    assert isinstance(make_sampler("NSGA-II", seed=0, n_trials=8), optuna.samplers.NSGAIISampler)
