"""The search objective: suggest a candidate, check it against the tables, proxy-train it if it fits.

Single objective: maximise proxy top-1 subject to every constraint (intermediate top-1 is reported each epoch, so
the pruner can stop weak candidates). Pareto: maximise proxy top-1 and minimise the primary constraint's
predicted latency (or maximise its throughput); Optuna does not prune multi-objective studies, so a run still at
chance level after its first epoch is stopped here and scored as it stands.

Infeasible candidates are never trained: the trial records its predictions and constraint violations and
completes at once with the score -inf. The samplers learn the feasible region from the violations (TPE and
NSGA-II rank an infeasible trial by its violation alone; the GP sampler clips infinite scores), while parameter
importances (Optuna's, and optuna-dashboard's) leave non-finite scores out, so they say what made trained
networks score well rather than being dominated by placeholder zeros of networks that were never trained.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.arch import ArchConfig
from patsearch.search.constraints import LATENCY, Constraint, record_violations

logger = logging.getLogger("patsearch.search")

SINGLE = "single"
PARETO = "pareto"
OBJECTIVES = (SINGLE, PARETO)

# Names of trial user attributes; the results module and dashboards read these.
ATTR_ARCH = "arch"
ATTR_RESOLUTION = "resolution"
ATTR_BASELINE = "baseline"
ATTR_OUTSIDE_SPACE = "baseline_outside_space"
ATTR_FEASIBLE = "feasible"
ATTR_PARAMS = "params"
ATTR_FLOPS = "flops"
ATTR_TOP1 = "proxy_top1"
ATTR_EPOCHS = "proxy_epochs_run"
ATTR_SECONDS = "proxy_seconds"
ATTR_STOPPED = "stopped_early"
ATTR_DUPLICATE = "duplicate_of"
ATTR_DIVERGED = "diverged"
ATTR_COLLAPSE = "collapse"  # the proxy training's top-1 fell most of the way back to chance (see train.collapse)
# Re-trainings of a multi-fidelity search (patsearch.search.rungs): the rung, the rung-0 trial whose network is
# trained again, its seed and its training length.
ATTR_RUNG = "rung"
ATTR_RUNG_PARENT = "rung_parent"
ATTR_RUNG_SEED = "rung_seed"
ATTR_RUNG_EPOCHS = "rung_epochs"
PRED_PREFIX = "pred:"
RETRAINING_DIR = "retrainings"  # under a study's results folder: the checkpoints of re-trainings under way
INFEASIBLE_SCORE = float("-inf")  # the proxy top-1 an infeasible (never trained) trial completes with


def directions(objective: str, constraints: Sequence[Constraint]) -> list[str]:
    if objective == SINGLE:
        return ["maximize"]
    if objective == PARETO:
        return ["maximize", "minimize" if constraints[0].kind == LATENCY else "maximize"]
    raise ValueError(objective)


@dataclass
class Objective:
    """Callable objective for ``study.optimize``; ``run_proxy(arch, on_epoch_end=...)`` returns top-1 in [0, 1]
    and calls ``on_epoch_end(epoch, top1)`` after each epoch (which may raise to stop it).

    ``run_proxy`` is the one place training happens (see :mod:`patsearch.search.proxy`); tests pass a stand-in.
    ``count_costs(arch, resolution) -> (params, flops)`` is recorded for feasible candidates.
    """

    space: Any
    constraints: Sequence[Constraint]
    run_proxy: Callable[..., float]
    objective: str = SINGLE
    count_costs: Callable[[ArchConfig, int], tuple[int, int]] | None = None
    chance: float = 0.1  # top-1 of guessing; Pareto runs at or below 1.05x this after epoch 1 are stopped
    # Called once the trial's constraints are recorded (the worker loop releases its claim lock here).
    after_constraints: Callable[[], None] | None = None
    # Where re-trainings keep their checkpoints, for a runner that takes ``run_dir`` (``run_proxy.resumable``): one
    # cut by a kill resumes from its last epoch rather than from scratch; its folder goes once it is scored.
    retrain_dir: str | os.PathLike | None = None

    def candidate(self, trial) -> tuple[ArchConfig, int]:
        baseline = trial.user_attrs.get(ATTR_BASELINE)
        if ATTR_RUNG in trial.user_attrs:  # a re-training carries its network; its parameters are recorded too
            if not trial.user_attrs.get(ATTR_OUTSIDE_SPACE):
                self.space.suggest(trial)
            return ArchConfig.from_dict(trial.user_attrs[ATTR_ARCH]), int(trial.user_attrs[ATTR_RESOLUTION])
        if baseline and trial.user_attrs.get(ATTR_OUTSIDE_SPACE):
            # A baseline the space cannot express carries its own description (and no parameters).
            return ArchConfig.from_dict(trial.user_attrs[ATTR_ARCH]), int(trial.user_attrs[ATTR_RESOLUTION])
        cand = self.space.suggest(trial)
        arch = cand.arch.replace(name=baseline) if baseline else cand.arch
        return arch, int(cand.resolution)

    def __call__(self, trial) -> float | tuple[float, float]:
        import optuna

        arch, resolution = self.candidate(trial)
        trial.set_user_attr(ATTR_ARCH, arch.to_dict())
        trial.set_user_attr(ATTR_RESOLUTION, resolution)
        predicted: dict[str, float] = {}
        feasible = True
        for c in self.constraints:
            value = c.predict(arch, resolution)
            predicted[c.key] = value
            trial.set_user_attr(PRED_PREFIX + c.key, value)
            feasible &= c.feasible(value)
        record_violations(trial, [c.violation(predicted[c.key]) for c in self.constraints])
        trial.set_user_attr(ATTR_FEASIBLE, feasible)
        retraining = ATTR_RUNG in trial.user_attrs
        # Under the claim lock still: a proposal identical to a finished or running trial is marked before any
        # other worker counts it, so the study's target counts distinct networks.
        duplicate = None
        if feasible and not retraining and not trial.user_attrs.get(ATTR_BASELINE):
            duplicate = _find_duplicate(trial, arch, resolution)
            if duplicate is not None:
                trial.set_user_attr(ATTR_DUPLICATE, duplicate.number)
        if self.after_constraints is not None:
            self.after_constraints()
        primary = predicted[self.constraints[0].key]
        if not feasible:  # worst possible: samplers rank it by its violation; importances skip non-finite scores
            return self._result(INFEASIBLE_SCORE, primary)
        if duplicate is not None:
            # The same network was (or is being) trained with the same proxy: reuse its score, never retrain.
            done = _wait_for(trial, duplicate)
            if done is None or ATTR_TOP1 not in done.user_attrs:
                raise optuna.TrialPruned(f"trial {duplicate.number}, the same network, did not finish")
            for key in (ATTR_PARAMS, ATTR_FLOPS, ATTR_TOP1, ATTR_EPOCHS):
                if key in done.user_attrs:
                    trial.set_user_attr(key, done.user_attrs[key])
            return self._result(float(done.user_attrs[ATTR_TOP1]), primary)
        if retraining:
            return self._retrain(trial, arch, primary)
        if self.count_costs is not None:
            params, flops = self.count_costs(arch, resolution)
            trial.set_user_attr(ATTR_PARAMS, int(params))
            trial.set_user_attr(ATTR_FLOPS, int(flops))

        progress = {"epochs": 0, "top1": 0.0}
        multi = self.objective == PARETO
        is_baseline = bool(trial.user_attrs.get(ATTR_BASELINE))

        def on_epoch_end(epoch: int, top1: float) -> None:
            """``epoch`` counts from 1; ``top1`` is the validation top-1 as a fraction."""
            progress["epochs"] += 1
            progress["top1"] = top1
            trial.set_user_attr(ATTR_EPOCHS, progress["epochs"])
            if multi:
                if progress["epochs"] == 1 and top1 <= 1.05 * self.chance:
                    raise _StopEarly(top1)
                return
            trial.report(top1, progress["epochs"])
            if not is_baseline and trial.should_prune():  # baselines always finish: they are the reference
                raise optuna.TrialPruned(f"proxy top-1 {top1:.3f} after epoch {progress['epochs']}")

        def first_fidelity() -> float:
            try:
                return self.run_proxy(arch, on_epoch_end=on_epoch_end)
            except _StopEarly as stop:
                trial.set_user_attr(ATTR_STOPPED, True)
                return stop.top1

        top1 = self._train_timed(trial, first_fidelity)
        trial.set_user_attr(ATTR_TOP1, top1)
        return self._result(top1, primary)

    def _retrain(self, trial, arch: ArchConfig, primary: float) -> float | tuple[float, float]:
        """A multi-fidelity re-training: the rung's own full schedule and seed, never pruned (the rung's ranking
        is what decides)."""
        import optuna

        ua = trial.user_attrs
        run_dir = self.retraining_run_dir(ua)
        extra = {} if run_dir is None else {"run_dir": str(run_dir)}
        try:
            top1 = self._train_timed(trial, lambda: self.run_proxy(arch, seed=int(ua[ATTR_RUNG_SEED]),
                                                                   epochs=int(ua[ATTR_RUNG_EPOCHS]), **extra))
        except optuna.TrialPruned:  # diverged: retraining it would diverge again, so nothing is worth keeping
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        trial.set_user_attr(ATTR_TOP1, top1)
        trial.set_user_attr(ATTR_EPOCHS, int(ua[ATTR_RUNG_EPOCHS]))
        return self._result(top1, primary)

    def retraining_run_dir(self, user_attrs: dict[str, Any]) -> Path | None:
        """The checkpoint folder of one re-training (its network, rung, seed and length), the same for the trial
        that queues it again after a kill; None where the runner cannot resume."""
        if self.retrain_dir is None or not getattr(self.run_proxy, "resumable", False):
            return None
        what = {k: user_attrs.get(k) for k in (ATTR_ARCH, ATTR_RESOLUTION, ATTR_RUNG_EPOCHS, ATTR_RUNG_SEED)}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
        name = (f"t{user_attrs.get(ATTR_RUNG_PARENT)}-r{user_attrs.get(ATTR_RUNG)}-"
                f"s{user_attrs.get(ATTR_RUNG_SEED)}-{digest}")
        return Path(self.retrain_dir) / name

    def _train_timed(self, trial, train: Callable[[], float]) -> float:
        """One proxy training, its seconds recorded on the trial; a training that diverged prunes the trial, and
        one that collapsed is marked (its score says more about the proxy's lr than about the network)."""
        import optuna

        start = time.perf_counter()
        try:
            top1 = float(train())
        except ProxyDiverged as exc:
            trial.set_user_attr(ATTR_DIVERGED, str(exc))
            raise optuna.TrialPruned(f"proxy training diverged: {exc}") from None
        finally:
            trial.set_user_attr(ATTR_SECONDS, round(time.perf_counter() - start, 2))
        from patsearch.train.collapse import find_collapse  # here: the train package imports torch

        history = getattr(self.run_proxy, "last_history", None)  # runners that keep no history mark nothing
        num_classes = getattr(self.run_proxy, "num_classes", None)
        collapse = find_collapse(history, int(num_classes)) if history and num_classes else None
        if collapse is not None:
            trial.set_user_attr(ATTR_COLLAPSE, collapse.to_dict())
        return top1

    def _result(self, top1: float, primary: float) -> float | tuple[float, float]:
        return (top1, primary) if self.objective == PARETO else top1


class ProxyDiverged(Exception):
    """Proxy training of a candidate blew up (NaN loss): the candidate is scored as pruned, the search goes on."""


class _StopEarly(Exception):
    def __init__(self, top1: float) -> None:
        super().__init__(f"top-1 {top1:.3f}")
        self.top1 = top1


def _find_duplicate(trial, arch: ArchConfig, resolution: int):
    """A first-fidelity trial of the same network at the same resolution (names aside) that was trained or is
    training now, if any; completed ones first."""
    from optuna.trial import TrialState

    study = getattr(trial, "study", None)
    if study is None:
        return None
    wanted = {k: v for k, v in arch.to_dict().items() if k != "name"}
    found = []
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        ua = other.user_attrs
        if other.number == trial.number or ATTR_RUNG in ua or ua.get(ATTR_DUPLICATE) is not None:
            continue
        if ua.get(ATTR_RESOLUTION) != resolution or ua.get(ATTR_FEASIBLE) is False:
            continue
        if other.state == TrialState.COMPLETE and ATTR_TOP1 not in ua:
            continue
        theirs = {k: v for k, v in (ua.get(ATTR_ARCH) or {}).items() if k != "name"}
        if theirs == wanted:
            found.append(other)
    found.sort(key=lambda t: (t.state != TrialState.COMPLETE, t.number))
    return found[0] if found else None


DUPLICATE_POLL_S = 2.0


def _wait_for(trial, other):
    """``other`` once it has finished (at once if it has); None if it ended without a score. A trial still
    running is polled: its worker trains it, this one only waits for the score. A running trial whose worker is
    gone (its heartbeat stale) will not finish on its own: None, and this worker's next claim step retries it."""
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    study = trial.study
    storage = study._storage
    while True:
        current = storage.get_trial(other._trial_id)
        if current.state == TrialState.COMPLETE:
            return current
        if current.state != TrialState.RUNNING:
            return None
        if is_heartbeat_enabled(storage) and other._trial_id in storage._get_stale_trial_ids(study._study_id):
            return None
        time.sleep(DUPLICATE_POLL_S)
