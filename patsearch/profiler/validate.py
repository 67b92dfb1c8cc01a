"""End-to-end validation: measure random architectures, fit the calibration, report fidelity, plot it.

Two disjoint sets are drawn from one seeded stream of unique points of the space: the first ``n_calibrate``
fit the calibration, the next ``n_evaluate`` are only ever used to score it. Measurements are stored in the
profile as they are taken (so a validation resumes too), in a shuffled order that mixes the two sets, and in
small interleaved groups so that background load hits calibration and evaluation alike.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patsearch.arch import ArchConfig
from patsearch.io import atomic_save_figure
from patsearch.models.forms import build_form
from patsearch.profiler.devices import Device
from patsearch.profiler.predictor import GROUPS, fidelity, fit_calibration
from patsearch.profiler.progress import MeasureProgress
from patsearch.profiler.table import Profile, _now
from patsearch.ranking import kendall_tau, spearman

ModelFactory = Callable[[ArchConfig, str], Any]
logger = logging.getLogger(__name__)


def network_key(arch: ArchConfig, resolution: int) -> str:
    return arch.structure_key(resolution)  # one definition of structural identity: patsearch.arch


def default_model_factory(arch: ArchConfig, form: str) -> Any:
    from patsearch.models import create_model

    return build_form(create_model(arch), form)


DEFAULT_CALIBRATE = 40  # random networks the calibration is fitted on, when --calibrate is not given
UNSTABLE_SPREAD = 0.10   # p10-p90 spread above which an end-to-end measurement is taken again (once) ...
HOST_SPREAD_FACTOR = 2.0  # ... if it is also this many times the host's median spread (a noisy VM spreads 20-40%)
# A network timed while other processes kept the host busy is measured again up to this many times (on a busy
# 2-core VM an adapted table came out 30% fast), each time after waiting up to QUIET_WAIT_S for the load to drop.
BUSY_RETRIES = 2
QUIET_WAIT_S = 15.0


def measure_networks(profile: Profile, items: Sequence[tuple[str, ArchConfig, int, str]], device: Device, *,
                     model_factory: ModelFactory | None = None, budget: Any = None, group: int = 4,
                     progress: bool = True, save_every_s: float = 5.0,
                     unstable_spread: float = UNSTABLE_SPREAD, host_factor: float = HOST_SPREAD_FACTOR,
                     busy_retries: int = BUSY_RETRIES, quiet_wait_s: float = QUIET_WAIT_S) -> dict[str, Any]:
    """Measure (key, arch, resolution, role) networks end to end that the profile lacks, interleaved in groups.

    A network whose samples spread (p10 to p90) by more than ``unstable_spread`` and by more than ``host_factor``
    times this host's typical spread (the median over these networks) was disturbed while measured; after the
    first pass it is measured once more and the steadier of the two measurements is kept. Relative to the host,
    because on a noisy VM every network spreads by 20-40% and retrying them all doubled the time for nothing
    (a retry is as noisy as the first try); an outlier there, or any spread above 10% on a quiet host, is retried.

    Other processes' load is measured while each group is timed (:class:`patsearch.host.LoadMonitor`, stored as
    ``host_others_cores``): a network timed on a busy host is measured again, up to ``busy_retries`` times, each
    once the host has quietened (waiting up to ``quiet_wait_s``; still busy: no more retries, which would be as
    disturbed), keeping its least-loaded measurement. Returns the load summary, also stored as the profile's
    ``provenance["host_load"]``.
    """
    from patsearch import host
    from patsearch.profiler.timing import NETWORK_BUDGET_CPU, NETWORK_BUDGET_GPU, configure, prepare, time_interleaved

    protocol = profile.protocol
    factory = model_factory or default_model_factory
    budget = budget or (NETWORK_BUDGET_CPU if device.backend == "cpu" else NETWORK_BUDGET_GPU)
    gpu = device.backend != "cpu"
    configure(device, protocol)
    for key, _, _, role in items:  # a network measured before may serve another role in this validation
        if key in profile.networks:
            profile.networks[key]["role"] = role

    cores = host.usable_cores()
    needed = 1 if gpu else (protocol.threads or cores)   # a GPU measurement keeps one thread launching

    def was_busy(entry: dict[str, Any]) -> bool:
        return host.busy(entry.get("host_others_cores", 0.0), cores=cores, needed=needed)

    todo = [item for item in items if item[0] not in profile.networks]
    last_save = time.perf_counter()
    with MeasureProgress(progress, total=len(items), done=len(items) - len(todo),
                         description=f"end-to-end {profile.device}") as advance:
        def measure(queue: list, retry: bool) -> None:
            nonlocal last_save
            for position in range(0, len(queue), group):
                chunk = queue[position:position + group]
                prepared = [prepare(factory(arch, protocol.form), (3, res, res), device, protocol)
                            for _, arch, res, _ in chunk]
                with host.LoadMonitor() as monitor:
                    timings = time_interleaved(prepared, gpu=gpu, budget=budget, clock=protocol.clock,
                                               graphs=protocol.cuda_graphs)
                del prepared
                others = round(monitor.load.others_cores, 3) if monitor.load else 0.0
                for (key, arch, res, role), timing in zip(chunk, timings):
                    entry = {"arch": arch.to_dict(), "resolution": res, "role": role, **timing.to_dict(),
                             "host_others_cores": others}
                    if retry:  # keep the least-loaded, then the steadier, measurement
                        entry = min(profile.networks[key], entry, key=lambda e: (was_busy(e), spread(e)))
                        entry["retried"] = True
                    else:
                        advance()
                    profile.networks[key] = entry
                if gpu:
                    import torch

                    torch.cuda.empty_cache()
                if time.perf_counter() - last_save >= save_every_s:
                    profile.save()
                    last_save = time.perf_counter()

        try:
            measure(todo, retry=False)
            measured = [profile.networks[key] for key, *_ in items if key in profile.networks]
            typical = float(np.median([spread(e) for e in measured])) if measured else 0.0
            limit = max(unstable_spread, host_factor * typical)
            measure([item for item in items
                     if spread(profile.networks[item[0]]) > limit and not profile.networks[item[0]].get("retried")],
                    retry=True)
            for attempt in range(busy_retries):  # kept ones too: a rerun on a quieter host replaces disturbed times
                again = [item for item in items if was_busy(profile.networks[item[0]])]
                if not again:
                    break
                worst = max(profile.networks[key].get("host_others_cores", 0.0) for key, *_ in again)
                logger.warning(f"{len(again)} of {len(items)} networks were timed while other processes used up to "
                               f"{worst:.1f} of {cores} cores: waiting up to {quiet_wait_s:.0f} s for the host to "
                               f"quieten to measure them again (retry {attempt + 1} of {busy_retries})")
                load = host.wait_until_quiet(quiet_wait_s, needed=needed)
                if load is not None and load.busy(needed):  # measured again now, they would be as disturbed
                    logger.warning(f"the host stayed busy ({host.describe(load)}): keeping these measurements")
                    break
                measure(again, retry=True)
        finally:
            summary = load_summary([profile.networks[key] for key, *_ in items if key in profile.networks],
                                   cores=cores, needed=needed)
            profile.provenance["host_load"] = summary
            profile.save()
    return summary


def fidelity_lines(report: dict[str, Any]) -> list[str]:
    """A fidelity report as a few readable lines (what ``patsearch profile`` prints)."""
    def score(f: dict[str, Any]) -> str:
        return (f"{f['within_10pct']:.0f}% within +-10% ({f['within_5pct']:.0f}% within +-5%), MAPE "
                f"{f['mape']:.1f}%, max error {f['max_error_pct']:.1f}%, Kendall tau {f['kendall_tau']:.3f}")

    cal = report["calibrated"]
    lines = [f"fidelity on {cal['n']} held-out networks ({report['n_calibration']} fitted the calibration, "
             f"{report['calibration_model']} on {report['calibration_statistic']}): {score(cal)}",
             f"  uncalibrated table sum: {score(report['raw_sum'])}"]
    ranks = report.get("rank_correlation")
    if ranks:
        names = {"predictor": "predictor", "table_sum": "table sum", "flops": "FLOPs", "params": "params"}
        lines.append("  ranking the measured times (Kendall tau): " + ", ".join(
            f"{names.get(k, k)} {v['kendall_tau']:.3f}" for k, v in ranks.items()))
    return lines


def host_line(provenance: dict[str, Any]) -> str | None:
    """``host: 2 cores at 2445 MHz, load average 0.6 at the start; other processes used 0.1 cores while it
    measured (up to 0.4)``, from a table's provenance; None for tables made before it was recorded."""
    snap = provenance.get("host")
    if not snap:
        return None
    freq = (snap.get("cpu_freq_mhz") or {}).get("current")
    avg = snap.get("load_average")
    line = (f"host: {snap['cores']} cores" + (f" at {freq:.0f} MHz" if freq else "")
            + (f", load average {avg[0]:g} at the start" if avg else ""))
    load = provenance.get("host_load") or {}
    if load.get("others_cores_median") is not None:
        line += (f"; other processes used {load['others_cores_median']:.1f} cores while it measured "
                 f"(up to {load['others_cores_max']:.1f})")
    return line


def load_summary(entries: Sequence[dict[str, Any]], *, cores: int, needed: int) -> dict[str, Any]:
    """Other processes' load while these networks were timed: median and maximum in cores, and how many of them
    were timed on a busy host (:func:`patsearch.host.busy`) even after their retries."""
    from patsearch import host

    loads = [float(e.get("host_others_cores", 0.0)) for e in entries]
    busy = sum(host.busy(v, cores=cores, needed=needed) for v in loads)
    return {"cores": cores, "threads": needed, "others_cores_median": round(float(np.median(loads)), 2) if loads
            else None, "others_cores_max": round(max(loads), 2) if loads else None, "networks": len(loads),
            "busy_networks": busy}


def busy_warning(summary: dict[str, Any] | None, what: str, rerun: str) -> str | None:
    """One line naming the load ``what`` was measured under and the command to measure again, or None when the
    host was quiet enough."""
    if not summary or not summary.get("busy_networks"):
        return None
    return (f"{what} was measured on a busy host: other processes used {summary['others_cores_median']:.1f} of "
            f"{summary['cores']} cores (up to {summary['others_cores_max']:.1f}) while {summary['busy_networks']} of "
            f"its {summary['networks']} networks were timed, even after retries, so its times may be off by tens of "
            f"percent; run `{rerun}` when the host is quieter (see `uptime`)")


def spread(entry: dict[str, Any]) -> float:
    """p10-to-p90 spread of an end-to-end measurement, as a fraction of its p10."""
    return entry["p90"] / entry["p10"] - 1 if entry["p10"] > 0 else 0.0


def split_samples(space: Any, n_calibrate: int, n_evaluate: int, seed: int) -> list[tuple[str, ArchConfig, int, str]]:
    """Disjoint calibration and evaluation sets (unique networks from one seeded stream)."""
    cands = space.samples(n_calibrate + n_evaluate, seed=seed)
    items = []
    for i, (arch, res) in enumerate(cands):
        role = "calibration" if i < n_calibrate else "evaluation"
        items.append((network_key(arch, res), arch, res, role))
    return items


def assign_roles(profile: Profile, items: list[tuple[str, ArchConfig, int, str]]) -> None:
    """Give this validation's networks their roles; networks kept from an earlier validation (another seed or
    size) become ``earlier``, so the stored roles always describe the current fidelity report."""
    current = {key: role for key, _, _, role in items}
    for key, network in profile.networks.items():
        network["role"] = current.get(key, "earlier")


def _score_and_store(profile: Profile, items: list[tuple[str, ArchConfig, int, str]], space: Any, seed: int,
                     plot: str | Path | None, missing: Sequence[str] = ()) -> dict[str, Any]:
    """Fit the calibration on this validation's networks, score it, plot it, and store the report."""
    report = fit_and_score(profile, items)
    report.update(space=space.name, seed=seed, date=_now())
    if missing:  # a validation cut short: say so in the report itself
        report["missing_networks"] = list(missing)
    if plot is not None:
        report["plot"] = Path(plot).name
        plot_fidelity(profile, items, plot)
    profile.data["fidelity"] = report
    profile.save()
    return report


def validate(profile: Profile, space: Any, device: Device, *, n_evaluate: int, n_calibrate: int = DEFAULT_CALIBRATE,
             seed: int = 0, model_factory: ModelFactory | None = None, plot: str | Path | None = None,
             progress: bool = True, budget: Any = None) -> dict[str, Any]:
    """Measure, calibrate on one set, score on the other; store calibration and fidelity in the profile."""
    items = split_samples(space, n_calibrate, n_evaluate, seed)
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)  # mix roles in time
    load = measure_networks(profile, shuffled, device, model_factory=model_factory, progress=progress,
                            budget=budget)
    assign_roles(profile, items)
    report = _score_and_store(profile, items, space, seed, plot)
    line = busy_warning(load, f"the validation of {profile.path.name if profile.path else profile.device}",
                        f"patsearch profile --device {profile.device} --validate {n_evaluate}")
    if line:
        logger.warning(line)
    return report


def refit(profile: Profile, space: Any, *, n_evaluate: int, n_calibrate: int = DEFAULT_CALIBRATE, seed: int = 0,
          plot: str | Path | None = None, partial: bool = False) -> dict[str, Any]:
    """Fit and score again from the networks a profile already holds (no measuring; any host).

    ``partial``: a validation that was cut short (a lease ended) is scored over the networks it measured; the
    report lists the missing ones. Otherwise a missing network is an error.
    """
    items = split_samples(space, n_calibrate, n_evaluate, seed)
    missing = [key for key, *_ in items if key not in profile.networks]
    if missing and not partial:
        from patsearch.profiler.table import ProfileError

        raise ProfileError(f"profile lacks {len(missing)} of the {len(items)} networks of this validation; "
                           f"run `patsearch profile --device {profile.device} --validate {n_evaluate}` on it, or "
                           "add --partial to score over the networks it has")
    items = [item for item in items if item[0] in profile.networks]
    assign_roles(profile, items)
    import sys

    profile.provenance.setdefault("history", []).append(
        {"date": _now(), "command": " ".join(sys.argv), "refit": f"{n_calibrate} calibration + {n_evaluate} "
                                                                  f"evaluation networks, seed {seed}"
                                                                  + (f", {len(missing)} missing" if missing else "")})
    report = _score_and_store(profile, items, space, seed, plot, missing=missing)
    return report


def fit_and_score(profile: Profile, items: Sequence[tuple[str, ArchConfig, int, str]], *,
                  costs: bool = True) -> dict[str, Any]:
    """Fit the calibration on the calibration items and score raw sum and calibrated on the evaluation items
    (``costs``: also rank FLOPs and params against the measurements, counting each network once)."""
    from patsearch.profiler.predictor import Predictor

    profile.data["calibration"] = None
    profile._predictor = None
    calib = [i for i in items if i[3] == "calibration"]
    evaluation = [i for i in items if i[3] == "evaluation"]
    if len(calib) < 2 or not evaluation:
        raise ValueError("need at least 2 calibration and 1 evaluation networks")
    # The truth is always the end-to-end median; the table statistic (median or p10) is chosen by the
    # calibration's leave-one-out error, like the model.
    measured = np.array([profile.networks[key]["ms"] for key, *_ in calib])
    calibration = None
    statistics = ["ms", "p10"]
    for optional in ("graph_ms", "min_p10"):
        if profile.entries and all(optional in e for e in profile.entries.values()):
            statistics.append(optional)
    for statistic in statistics:
        stat_predictor = Predictor(profile, statistic)
        feats = np.vstack([stat_predictor.features(arch, res) for _, arch, res, _ in calib])
        fitted = fit_calibration(feats, measured)
        fitted["statistic"] = statistic
        best = fitted["loo_mape"][fitted["model"]]
        if calibration is None or best < calibration["loo_mape"][calibration["model"]]:
            calibration = fitted
    profile.data["calibration"] = calibration
    profile._predictor = None
    calibrated = profile.predictor
    raw = Predictor(profile, "ms")

    def scores(pred_ms: np.ndarray, meas_ms: np.ndarray) -> dict[str, float]:
        return fidelity(calibrated.to_metric(pred_ms), calibrated.to_metric(meas_ms))

    eval_feats = np.vstack([raw.features(arch, res) for _, arch, res, _ in evaluation])
    eval_ms = np.array([profile.networks[key]["ms"] for key, *_ in evaluation])
    raw_ms = eval_feats[:, :len(GROUPS)].sum(axis=1)
    cal_ms = np.array([calibrated.predict_ms(arch, res) for _, arch, res, _ in evaluation])
    spreads = [spread(profile.networks[key]) for key, *_ in items if profile.networks[key]["p10"] > 0]
    return {
        "metric": profile.metric,
        "n_calibration": len(calib), "n_evaluation": len(evaluation),
        "calibration_model": calibration["model"], "calibration_statistic": calibration["statistic"],
        "calibration_loo_mape": calibration["loo_mape"],
        "raw_sum": scores(raw_ms, eval_ms),
        "calibrated": scores(cal_ms, eval_ms),
        "raw_sum_bias_pct": round(float(np.median(raw_ms / eval_ms - 1)) * 100, 2),
        # The same score restricted to evaluation networks whose own measurement was steady (p10-p90 spread
        # within UNSTABLE_SPREAD): separates predictor error from a disturbed ground truth. Reported beside,
        # never instead of, the full set.
        "calibrated_steady_truth": _steady_scores(profile, evaluation, cal_ms, eval_ms, calibrated.to_metric),
        "measurement_spread_p10_p90_pct": round(float(np.median(spreads)) * 100, 2) if spreads else None,
        "rank_correlation": rank_correlations(profile, evaluation, cal_ms, raw_ms, eval_ms) if costs else None,
    }


def network_costs(profile: Profile, key: str, arch: ArchConfig, resolution: int) -> tuple[float, float]:
    """(GFLOPs, M params) of a network, counted once and kept in its entry.

    Both add up over layers, so they are summed over the network's table layers like the predictor's times, each
    distinct layer counted once per process (:func:`layer_costs`): a second for a whole validation, where
    building and tracing every network would take minutes on one core.
    """
    entry = profile.networks[key]
    if "flops_g" not in entry or "params_m" not in entry:
        from patsearch.profiler.predictor import layer_groups

        flops = params = 0.0
        for _, spec, hw, count in layer_groups(arch, resolution):
            f, p = layer_costs(spec, hw, profile.protocol.form)
            flops, params = flops + count * f, params + count * p
        entry["flops_g"], entry["params_m"] = round(flops / 1e9, 6), round(params / 1e6, 6)
    return entry["flops_g"], entry["params_m"]


@functools.lru_cache(maxsize=4096)
def layer_costs(spec: Any, hw: tuple[int, int], form: str) -> tuple[int, int]:
    """FLOPs (one multiply-add = one FLOP, as in :mod:`patsearch.counting`; convolutions, matmuls, attention, as
    torch's FlopCounterMode counts them) and parameters of one layer at batch 1, in the profile's form."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from patsearch.profiler.build import default_layer_factory

    layer = default_layer_factory(spec, form)
    channels = 3 if spec.kind == "stem" else spec.in_dim
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        layer(torch.zeros(1, channels, *hw))
    return counter.get_total_flops() // 2, sum(p.numel() for p in layer.parameters())


def rank_correlations(profile: Profile, evaluation: Sequence[tuple[str, ArchConfig, int, str]],
                      predicted_ms: np.ndarray, raw_ms: np.ndarray, measured_ms: np.ndarray) -> dict[str, Any]:
    """Kendall tau and Spearman rho against the measured time: the predictor, the plain table sum, FLOPs and
    params (proxies a search could use without any table; the predictor has to beat them to be worth it)."""
    costs = np.array([network_costs(profile, key, arch, res) for key, arch, res, _ in evaluation])
    out = {}
    for name, values in (("predictor", predicted_ms), ("table_sum", raw_ms), ("flops", costs[:, 0]),
                         ("params", costs[:, 1])):
        out[name] = {"kendall_tau": round(kendall_tau(values, measured_ms), 4),
                     "spearman": round(spearman(values, measured_ms), 4)}
    return out


def _steady_scores(profile: Profile, evaluation: Sequence[tuple[str, ArchConfig, int, str]], pred_ms: np.ndarray,
                   meas_ms: np.ndarray, to_metric: Callable[[Any], Any]) -> dict[str, float] | None:
    steady = np.array([profile.networks[key]["p90"] / profile.networks[key]["p10"] - 1 <= UNSTABLE_SPREAD
                       for key, *_ in evaluation])
    if steady.sum() < 3:
        return None
    return fidelity(to_metric(pred_ms[steady]), to_metric(meas_ms[steady]))


def plot_fidelity(profile: Profile, items: Sequence[tuple[str, ArchConfig, int, str]],
                  path: str | Path) -> Path:
    """Predicted-vs-measured scatter (evaluation set; raw sum and calibrated) with +-10% bands, as a PNG."""
    return atomic_save_figure(fidelity_figure(profile, items), path)


def log_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round tick values for a log axis from ``lo`` to ``hi``: the coarsest of 1, 1-2-5, 1-2-3-5-7 and every
    digit (with 1.5) per decade that gives at least 3 ticks, thinned to at most ``most``. Matplotlib's own log
    ticks label a range under a decade with crowded minor labels ("3x10^1 4x10^1")."""
    import math

    ticks: list[float] = []
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [float(f"{m * 10.0 ** e:.6g}") for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            break
    step = math.ceil(len(ticks) / most)
    return ticks[::step]


def tick_label(value: float, _position: Any = None) -> str:
    """``30``, ``1.5``, ``20,000``: plain numbers, no powers of ten."""
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"


def fidelity_figure(profile: Profile, items: Sequence[tuple[str, ArchConfig, int, str]]) -> Any:
    """The figure :func:`plot_fidelity` saves (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    pred = profile.predictor
    evaluation = [i for i in items if i[3] == "evaluation"]
    meas = pred.to_metric(np.array([profile.networks[k]["ms"] for k, *_ in evaluation]))
    cal = pred.to_metric(np.array([pred.predict_ms(a, r) for _, a, r, _ in evaluation]))
    from patsearch.profiler.predictor import Predictor

    median_sum = Predictor(profile, "ms")
    raw = pred.to_metric(np.array([median_sum.raw_ms(a, r) for _, a, r, _ in evaluation]))
    unit = "ms" if profile.metric == "latency_ms" else "images/s"
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    lo, hi = float(min(meas.min(), cal.min(), raw.min())) * 0.9, float(max(meas.max(), cal.max(), raw.max())) * 1.1
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, color="black", lw=1)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.15, label="+-10%")
    f_raw = fidelity(raw, meas)
    f_cal = fidelity(cal, meas)
    ax.scatter(meas, raw, marker="x", color="tab:gray", s=18,
               label=f"table sum: {f_raw['within_10pct']:.0f}% in +-10%, tau {f_raw['kendall_tau']:.3f}")
    ax.scatter(meas, cal, marker="o", color="tab:blue", s=14,
               label=f"calibrated: {f_cal['within_10pct']:.0f}% in +-10%, tau {f_cal['kendall_tau']:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
        axis.set_major_formatter(FuncFormatter(tick_label))
        axis.set_minor_formatter(NullFormatter())
    quantity = "latency" if profile.metric == "latency_ms" else "throughput"
    ax.set_xlabel(f"measured {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    hw = profile.provenance.get("hardware", "")
    ax.set_title(f"{profile.device} ({hw[:40]}), {profile.protocol.slug()}\n"
                 f"{len(evaluation)} held-out random architectures", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
