"""The study's sampler and pruner, chosen by name (``--sampler``, ``--pruner``) and sized for a short search; the
pruner sees trained trials only."""
from __future__ import annotations

from patsearch.errors import UserError
from patsearch.search.optuna_noise import quiet_optuna
from patsearch.search.trial_counts import is_infeasible

SAMPLERS = ("tpe", "nsga2", "gp", "random")
PRUNERS = ("median", "hyperband", "none")


def make_sampler(name: str, *, seed: int | None, n_trials: int, multi_objective: bool = False):
    """TPE (multivariate, grouped, constant liar), NSGA-II, GP or random, sized for a short search.

    All read the constraints each trial records with ``trial.set_constraint`` (Optuna 5), so they learn where the
    feasible region is without a second model.
    """
    quiet_optuna()
    import optuna

    name = name.lower().replace("-", "").replace("_", "")
    startup = max(3, min(10, n_trials // 3))  # Optuna's default (10) would make a 10-trial search purely random
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=startup)
    if name in ("nsga2", "nsgaii"):
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 3)))
    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise UserError("--sampler gp needs scipy, which is not installed; pip install scipy, or use "
                            "--sampler tpe")
        # the space is conditional (num_heads only where a stage has attention): GP samples such parameters
        # independently by design, and would warn about each on every trial
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, multi_objective: bool, epochs: int):
    """Median pruning of proxy runs by default; none for Pareto studies (Optuna prunes single objectives only)."""
    import optuna

    name = name.lower()
    if name not in PRUNERS:
        raise UserError(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")
    if multi_objective or name == "none" or epochs < 2:
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return TrainedOnly(optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3))
    # Once 3 candidates were trained; not in the first half of a run, where short proxies still rank noise (a
    # CIFAR search that pruned from epoch 1 stopped 5 of 6 candidates and finished one).
    return TrainedOnly(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=epochs // 2, interval_steps=1))


class _TrainedTrialsView:
    """A study as a pruner should see it: without infeasible trials, which completed without training and
    would otherwise count as finished "startup" trials and thin out the median."""

    def __init__(self, study) -> None:
        self._study = study

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if not is_infeasible(t)]

    @property
    def trials(self):
        return self.get_trials()

    def __getattr__(self, name: str):
        return getattr(self._study, name)


def _base_pruner():
    import optuna

    return optuna.pruners.BasePruner


class TrainedOnly(_base_pruner()):
    """Wraps an Optuna pruner so that it ignores infeasible (never trained) trials."""

    def __init__(self, pruner) -> None:
        self.pruner = pruner

    def prune(self, study, trial) -> bool:
        return self.pruner.prune(_TrainedTrialsView(study), trial)

    def __getattr__(self, name: str):
        return getattr(self.pruner, name)

