"""A search's plots, as PNG files: accuracy against the primary constraint with the front, the optimisation
history and parameter importances (``optuna.visualization.matplotlib``; each written to a temp name and renamed).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from patsearch.io import atomic_save_figure
from patsearch.search.optuna_noise import quiet_importances
from patsearch.search.results import ConstraintInfo, Row, constraints_of, pareto_front, rows
from patsearch.search.trial_counts import is_infeasible

# Below this many trained networks parameter importances are a rough hint (8 trials gave "depth3 0.81" on a tiny
# study, which a few more trials can overturn): the plot says so in its title.
FEW_FOR_IMPORTANCES = 20


def write_plots(study, out_dir: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Pareto front (accuracy vs the primary constraint), optimisation history and parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written: list[Path] = []
    notes: list[str] = []
    multi = len(study.directions) > 1
    cons = constraints_of(study)
    rs = rows(study)

    def save(ax, name: str) -> None:
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5.5)
        written.append(atomic_save_figure(fig, out / name, dpi=110, bbox_inches="tight"))

    plots = [
        ("pareto.png", lambda: _front_plot(study, rs, cons, multi)),
        ("history.png", lambda: _history_plot(study, multi)),
        ("importances.png", lambda: importances_plot(study, notes)),
    ]
    for name, make in plots:
        try:
            save(make(), name)
        except Exception as exc:  # too few trials for importances, no parameters, ...
            notes.append(f"{name} skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            plt.close("all")
    return written, notes


TOP1_LABEL = "proxy top-1 (%)"


def _history_plot(study, multi: bool):
    """Optuna's history plot with the top-1 axis in % like the summary: a tick format, since a ``target`` that
    scaled the values would drop Optuna's best-value line of single-objective studies."""
    import optuna.visualization.matplotlib as ovm
    from matplotlib.ticker import PercentFormatter

    ax = ovm.plot_optimization_history(study, target=(lambda t: t.values[0]) if multi else None,
                                       target_name="proxy top-1")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel(TOP1_LABEL)
    return ax


def importances_plot(study, notes: list[str] | None = None):
    """Parameter importances over the trained networks, titled with how many they are and, when they are few,
    that the ranking is only a hint (a line in ``notes`` says so too)."""
    import optuna.visualization.matplotlib as ovm

    trained = trained_study(study)
    n = len(trained.trials)
    if len(study.directions) == 1:
        ax = ovm.plot_param_importances(trained, target_name="proxy top-1")
    else:  # PED-ANOVA ranks low targets as good (and says so): negate the maximised top-1, as optuna-dashboard does
        with quiet_importances():
            ax = ovm.plot_param_importances(trained, target=lambda t: -t.values[0], target_name="proxy top-1")
    title = f"Parameter importances for proxy top-1, from {n} trained networks"
    if n < FEW_FOR_IMPORTANCES:
        title += f"\nonly {n}: a rough hint that more trials can overturn, not a measurement"
        if notes is not None:
            notes.append(f"importances.png: from only {n} trained networks (under {FEW_FOR_IMPORTANCES}), a rough "
                         "hint")
    ax.set_title(title, loc="left", fontsize=10)  # in place of Optuna's own title, which sits on the left
    return ax


def trained_study(study):
    """An in-memory copy holding only the trained, completed trials: importances computed on it say what made
    networks score well, not which choices were too slow (infeasible trials score -inf, which Optuna's importances
    skip anyway; older studies gave them a placeholder 0. They teach the sampler through the constraint)."""
    import optuna

    copy = optuna.create_study(directions=study.directions, study_name=study.study_name)
    copy.add_trials([t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                     if not is_infeasible(t)])
    return copy


def _front_plot(study, rs: Sequence[Row], cons: Sequence[ConstraintInfo], multi: bool):
    import matplotlib.pyplot as plt

    if multi:
        import optuna.visualization.matplotlib as ovm

        c = cons[0]  # trained networks only: an infeasible one has no top-1 to place (its legend entry misled)
        return ovm.plot_pareto_front(trained_study(study), targets=lambda t: (100 * t.values[0], t.values[1]),
                                     target_names=[TOP1_LABEL, c.label()])
    # Single objective: still show accuracy against the primary constraint, with the budget and the front.
    c = cons[0]
    fig, ax = plt.subplots()
    trained = [r for r in rs if r.top1 is not None and c.key in r.predicted]
    infeasible = [r for r in rs if not r.feasible and c.key in r.predicted]
    searched = [r for r in trained if not r.baseline and r.state != "PRUNED"]
    pruned = [r for r in trained if not r.baseline and r.state == "PRUNED"]
    # Only what occurred gets a legend entry; scores in % as the summary gives them.
    if searched:
        ax.scatter([r.predicted[c.key] for r in searched], [100 * r.top1 for r in searched], label="searched",
                   alpha=0.8)
    if pruned:
        ax.scatter([r.predicted[c.key] for r in pruned], [100 * r.top1 for r in pruned], facecolors="none",
                   edgecolors="tab:orange", label="pruned (top-1 when stopped)", alpha=0.9)
    if infeasible:  # no score: along the bottom edge, so that they do not stretch the top-1 axis down to 0
        xs = [r.predicted[c.key] for r in infeasible]
        ax.scatter(xs, [0.02] * len(xs), marker="x", color="grey", transform=ax.get_xaxis_transform(),
                   label="infeasible (not trained, no score)")
        ax.update_datalim([(x, 100 * trained[0].top1) for x in xs] if trained else [(x, 0.0) for x in xs])
    for r in trained:
        if r.baseline:
            ax.scatter([r.predicted[c.key]], [100 * r.top1], marker="*", s=160, color="tab:red")
            ax.annotate(r.baseline, (r.predicted[c.key], 100 * r.top1), textcoords="offset points", xytext=(5, 5))
    front = pareto_front(rs, c.key, c.kind)
    if front:
        ax.plot([r.predicted[c.key] for r in front], [100 * r.top1 for r in front], color="tab:green",
                label="front")
    ax.axvline(c.limit, color="tab:red", linestyle="--", label=f"budget {c.limit:g} {c.unit}")
    ax.set_xlabel(f"predicted {c.label()}")
    ax.set_ylabel(TOP1_LABEL)
    ax.set_title(f"{study.study_name}: proxy accuracy vs predicted {c.kind}")
    ax.legend(loc="best")
    return ax
