"""Optuna's warnings and log lines that a search's output leaves out: experimental and deprecation notes, notes
on rare parameter values when importances are computed, and GP's clipping of infeasible trials' scores."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

# PED-ANOVA (the importances plot) warns about every parameter with a rare value: on a search of a few trials that
# is most of them, every time the plot is drawn, and the summary already says how many trials the plot rests on.
_IMPORTANCE_NOISE = (r"(Some regimes for parameter|PedAnovaImportanceEvaluator computes|The number of trials is too "
                     r"small to compute importances|Target and region quantiles select)")


def quiet_optuna() -> None:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    # Infeasible trials score -inf by design (see patsearch.search.objective); GP clips them on every proposal.
    warnings.filterwarnings("ignore", message="Clip non-finite values to the min/max finite values")
    warnings.filterwarnings("ignore", message=_IMPORTANCE_NOISE, category=UserWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextlib.contextmanager
def quiet_importances() -> Iterator[None]:
    """Only the importance notes left out, for the length of a block (a plot drawn without :func:`quiet_optuna`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_IMPORTANCE_NOISE, category=UserWarning)
        yield
