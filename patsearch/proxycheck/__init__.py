"""``patsearch proxy-check``: how far the proxy can be trusted, measured as its ranking of networks against a
training at least 5x longer (see :mod:`patsearch.proxycheck.run`).

:mod:`~patsearch.proxycheck.options` (what a check measures), :mod:`~patsearch.proxycheck.plan` (its networks,
jobs and the executor of one job), :mod:`~patsearch.proxycheck.report` (the JSON report, its plot and summary) and
:mod:`~patsearch.proxycheck.run` (the resumable loop that ties them together).
"""
from patsearch.proxycheck.options import FidelityOptions, apply_overrides, default_reference
from patsearch.proxycheck.report import build_report
from patsearch.proxycheck.run import FidelityResult, run_fidelity

__all__ = ["FidelityOptions", "FidelityResult", "apply_overrides", "build_report", "default_reference",
           "run_fidelity"]
