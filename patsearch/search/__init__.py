"""Hardware-aware architecture search: Optuna over a search space, constrained by lookup tables.

Public API (what ``patsearch search`` wraps)::

    from patsearch.search import SearchOptions, ProxySettings, run_search, show_study
    outcome = run_search(SearchOptions(latency_budgets=["35ms"]))   # runs/<study>/best.yaml, plots, summary
    show_study(outcome.study_name)                                   # reprint an existing study's summary

Pieces, one job each: :mod:`~patsearch.search.api` (the run), :mod:`~patsearch.search.options` (what it accepts
and its checks), :mod:`~patsearch.search.in_process` and :mod:`~patsearch.search.gpu_workers` (trials in this process,
or one worker process per GPU), :mod:`~patsearch.search.report` (the study's files; a study shown again),
:mod:`~patsearch.search.budget` (parse ``35ms`` / ``4000fps``),
:mod:`~patsearch.search.constraints` (constraints from profiles), :mod:`~patsearch.search.objective`,
:mod:`~patsearch.search.proxy` (proxy training through the trainer), :mod:`~patsearch.search.storage` (where a
study lives), :mod:`~patsearch.search.study` (a study opened, created or resumed, joined),
:mod:`~patsearch.search.samplers` (samplers, pruners), :mod:`~patsearch.search.worker_loop` (many workers on one
study, under :mod:`~patsearch.search.claim`'s lock, counting by :mod:`~patsearch.search.trial_counts`),
:mod:`~patsearch.search.optuna_noise` (Optuna's warnings kept out), :mod:`~patsearch.search.baselines`,
:mod:`~patsearch.search.results` (rows, the winner, noise) shown by :mod:`~patsearch.search.summary` and
:mod:`~patsearch.search.plots` and exported by :mod:`~patsearch.search.best_yaml`, :mod:`~patsearch.search.redact`
(credentials out of every message), :mod:`~patsearch.search.jobs` (resumable jobs over worker processes) and
:mod:`~patsearch.search.zerocost` (free scores), which :mod:`patsearch.proxycheck` also runs on.
"""
from patsearch.search.budget import BudgetError, parse_latency, parse_throughput

__all__ = ["BudgetError", "parse_latency", "parse_throughput", "ProxySettings", "SearchOptions", "SearchOutcome",
           "run_search", "show_study"]


def __getattr__(name: str):
    # Lazy: the search stack (optuna, torch) is imported only when a search actually runs.
    if name in ("SearchOutcome", "run_search"):
        from patsearch.search import api

        return getattr(api, name)
    if name == "SearchOptions":
        from patsearch.search.options import SearchOptions

        return SearchOptions
    if name == "show_study":
        from patsearch.search.report import show_study

        return show_study
    if name == "ProxySettings":
        from patsearch.search.proxy import ProxySettings

        return ProxySettings
    raise AttributeError(f"module 'patsearch.search' has no attribute {name!r}")
