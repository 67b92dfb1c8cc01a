"""The search's plots (patsearch.search.plots): only what occurred gets a legend entry, pruned and infeasible
trials are marked, top-1 is in percent, and importances from few networks say they are a rough hint."""
from __future__ import annotations

import pytest
from optuna.trial import TrialState
from search_helpers import tiny_search

from patsearch.search.plots import (
    FEW_FOR_IMPORTANCES,
    TOP1_LABEL,
    _front_plot,
    _history_plot,
    importances_plot,
    trained_study,
)
from patsearch.search.results import constraints_of, rows, state_counts
from patsearch.search.trial_counts import is_infeasible


def test_pareto_plot_marks_pruned_trials(tmp_path, tiny_profile):
    def run_proxy(arch, on_epoch_end=None):
        final = 0.1 + 0.01 * arch.embed_dim + 0.05 * arch.depths[2]
        for epoch in range(1, 5):
            on_epoch_end(epoch, final * epoch / 4)
        return final

    run_proxy.num_classes = 10
    out = tiny_search(tmp_path, tiny_profile, "5ms", proxy=run_proxy, trials=10, seed=0, sampler="random",
               pruner="median")
    pruned = [t for t in out.study.get_trials() if t.state == TrialState.PRUNED]
    assert pruned
    assert state_counts(out.study)["pruned"] == len(pruned)
    ax = _front_plot(out.study, rows(out.study), constraints_of(out.study), False)
    marked = [c for c in ax.collections if c.get_label().startswith("pruned")]
    assert len(marked) == 1 and len(marked[0].get_offsets()) == len(pruned)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plots_list_only_what_occurred_and_give_top1_in_percent(tmp_path, tiny_profile):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    clean = tiny_search(tmp_path / "a", tiny_profile, "5ms", trials=5, seed=2, pruner="none")
    rs = rows(clean.study)
    assert not [r for r in rs if not r.feasible or r.state == "PRUNED"]  # the case the issue saw: none occurred
    ax = _front_plot(clean.study, rs, constraints_of(clean.study), False)
    labels = ax.get_legend_handles_labels()[1]
    assert "searched" in labels and not [x for x in labels if x.startswith(("pruned", "infeasible"))]
    assert ax.get_ylabel() == TOP1_LABEL == "proxy top-1 (%)"
    searched = next(c for c in ax.collections if c.get_label() == "searched")
    assert sorted(y for _, y in searched.get_offsets()) == \
        pytest.approx(sorted(100 * r.top1 for r in rs if not r.baseline))

    tight = tiny_search(tmp_path / "b", tiny_profile, "1ms", trials=4, seed=3, pruner="none")
    rs = rows(tight.study)
    infeasible = [r for r in rs if not r.feasible]
    assert infeasible
    ax = _front_plot(tight.study, rs, constraints_of(tight.study), False)
    marks = next(c for c in ax.collections if c.get_label().startswith("infeasible"))
    assert len(marks.get_offsets()) == len(infeasible)
    lo, hi = ax.get_xlim()  # drawn along the bottom edge, inside the axes
    assert all(lo <= r.predicted["cpu:latency_ms"] <= hi for r in infeasible)
    assert ax.get_ylim()[0] > 1  # no made-up 0% score stretching the axis

    history = _history_plot(tight.study, False)
    assert isinstance(history.yaxis.get_major_formatter(), PercentFormatter)
    assert "Best Value" in history.get_legend_handles_labels()[1]

    notes: list[str] = []
    imp = importances_plot(tight.study, notes)
    n = len(trained_study(tight.study).trials)
    assert n < FEW_FOR_IMPORTANCES
    title = imp.get_title(loc="left")
    assert f"from {n} trained networks" in title and "rough hint" in title
    assert notes == [f"importances.png: from only {n} trained networks (under {FEW_FOR_IMPORTANCES}), a rough hint"]

    pareto = tiny_search(tmp_path / "c", tiny_profile, "1ms", trials=4, seed=3, objective="pareto")
    assert any(is_infeasible(t) for t in pareto.study.trials)
    ax = _front_plot(pareto.study, rows(pareto.study), constraints_of(pareto.study), True)
    assert ax.get_xlabel() == TOP1_LABEL and "Infeasible Trial" not in ax.get_legend_handles_labels()[1]
    plt.close("all")
