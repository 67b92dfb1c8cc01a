"""How far can the proxy be trusted? Its ranking of networks against a training at least 5x longer.

``patsearch proxy-check`` (:func:`run_fidelity`) samples N random networks of the space that meet a latency budget
on a lookup table (the search's own constraint code), adds the named PATNet variants within the budget, and trains
each with the proxy (every seed in ``seeds``) and once with the reference settings (>= 5x the training images,
epochs x set size, at the same or a higher resolution, on the same data). It reports Kendall's tau and Spearman's
rho of the proxy's mean top-1 against the reference top-1, the proxy's seed-to-seed standard deviation in points,
and the same correlations for scores that cost no training: parameters, FLOPs (fvcore) and synflow
(:mod:`patsearch.search.zerocost`). A proxy is worth its GPU time only where it ranks better than these.
Alternative proxies (``--also-proxy``) are trained on the same networks and scored against the same reference, so
one report compares proxy settings.

Every training is a job of :mod:`patsearch.search.jobs`: recorded atomically when it finishes, so a killed run
continues where it stopped; ``gpus="all"`` runs one worker process per GPU. The report (JSON, with top-level
``n``, ``kendall_tau``, ``spearman``, ``seed_std``, ``baselines``) and a scatter PNG are written beside each other
from whatever rows are complete, also after a partial run (``complete: false``).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import atomic_write_text
from patsearch.proxycheck.options import FREE, FidelityOptions, fingerprint
from patsearch.proxycheck.plan import Executor, import_records, make_jobs, plan_networks
from patsearch.proxycheck.report import build_report, plot_report, print_summary, write_report
from patsearch.search.jobs import RecordStore, parse_devices, run_jobs
from patsearch.search.proxy import ProxySettings, make_proxy_runner

logger = logging.getLogger(__name__)


@dataclass
class FidelityResult:
    report: dict[str, Any]
    json_path: Path
    png_path: Path | None
    ran: int


# A check grows in place: more networks (the sampler draws the same first ones), more proxy or reference seeds,
# more alternative proxies after the recorded ones (their records are keyed alt1, alt2, ... in order).
GROWABLE = ("n", "seeds", "reference_seeds", "alternatives")


def _fixed(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in GROWABLE}


def _load_or_plan(opts: FidelityOptions, load_profile) -> list[dict[str, Any]]:
    """The stored plan of a run being resumed, else a new one (stored before any training).

    A resumed run may ask for more networks or seeds than the stored one (its records are reused); anything else
    that defines the measurement must match."""
    plan_path = opts.records_dir / "plan.json"
    settings = opts.settings()
    if plan_path.exists():
        stored = json.loads(plan_path.read_text())
        stored_settings = stored.get("settings", {})
        stored_alts, alts = stored_settings.get("alternatives", []), settings.get("alternatives", [])
        if _fixed(stored_settings) != _fixed(settings) or alts[:len(stored_alts)] != stored_alts:
            diff = [k for k in _fixed(settings) if stored_settings.get(k) != settings[k]]
            diff += ["alternatives"] if alts[:len(stored_alts)] != stored_alts else []
            raise UserError(f"{opts.records_dir} holds a proxy check with other settings ({', '.join(diff)} "
                            "differ); rerun with the original options to resume it, or pass another --out")
        if stored_settings.get("n") == opts.n:
            plan = stored["plan"]
        else:
            plan = plan_networks(opts, load_profile=load_profile)
            ids = {row["id"]: row["arch"] for row in plan}
            lost = [row["id"] for row in stored["plan"] if ids.get(row["id"]) != row["arch"]]
            if lost:  # fewer networks than recorded, or a sampler that no longer draws the same ones
                raise UserError(f"{opts.records_dir} holds a proxy check of {stored_settings.get('n')} networks "
                                f"and --n {opts.n} would drop {', '.join(lost[:3])}; rerun with --n "
                                f"{stored_settings.get('n')} or more, or pass another --out")
        if plan != stored["plan"] or stored_settings != settings:
            _store_plan(plan_path, settings, plan)
        return plan
    plan = plan_networks(opts, load_profile=load_profile)
    _store_plan(plan_path, settings, plan)
    return plan


def _store_plan(path: Path, settings: dict[str, Any], plan: list[dict[str, Any]]) -> None:
    atomic_write_text(path, json.dumps({"fingerprint": fingerprint(settings), "settings": settings, "plan": plan},
                                       indent=1))


def run_fidelity(opts: FidelityOptions, *, console=None,
                 make_runner: Callable[[ProxySettings], Callable[..., float]] | None = None,
                 load_profile: Callable[[str], Any] | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 score_free: Callable[[Any, int], dict[str, Any]] | None = None) -> FidelityResult:
    """Run (or resume) the proxy fidelity check and write its JSON report and PNG.

    ``make_runner(settings) -> run_proxy(arch) -> top-1`` is the proxy trainer (default: the search's) and
    ``score_free(arch, resolution)`` the free scores (default :func:`free_scores`); with several devices both must
    be picklable. ``on_record(record)`` is called after each finished job is stored.
    """
    from functools import partial

    from rich.console import Console

    from patsearch.progress import progress_bar

    console = console or Console()
    make_runner = make_runner or make_proxy_runner
    devices = parse_devices(opts.gpus)
    if devices and devices[0] != "cpu" and "cpu" in (opts.proxy.device, opts.reference.device):
        raise UserError("--gpus runs the trainings on GPUs: use --proxy-device auto or cuda with it")
    plan = _load_or_plan(opts, load_profile)
    jobs = make_jobs(plan, opts.seeds, len(opts.alternatives), opts.reference_seeds)
    devices = [d for d in devices for _ in range(opts.workers_per_gpu)]
    if devices and opts.proxy.data is not None and make_runner is make_proxy_runner:
        from patsearch.search.proxy import prepare_folder

        for settings in (opts.proxy, opts.reference, *opts.alternatives):
            prepare_folder(settings)  # the linked subsets, built once here rather than raced for by every worker
    store = RecordStore(opts.records_dir)
    reused = 0 if opts.reuse_records is None else import_records(opts, plan, jobs, store)
    already = len(store.load(j.key for j in jobs))
    where = f"{len(devices)} worker process(es) on {'GPUs ' + ','.join(devices) if devices[0] != 'cpu' else 'CPU'}" \
        if devices else "this process"
    logger.info(f"proxy-check {len(plan)} networks ({sum(r['source'] == 'variant' for r in plan)} "
                f"variants), {len(jobs)} jobs, {already} already recorded in {opts.records_dir}"
                + (f" ({reused} copied from {opts.reuse_records})" if reused else "") + f"; running in {where}")
    start = time.time()
    deadline = None if opts.stop_after is None else start + opts.stop_after
    with progress_bar(console=console) as progress:
        task = progress.add_task("trainings", total=len(jobs), completed=already)

        def record_done(record: dict[str, Any]) -> None:
            what = ("free scores" if record["kind"] == FREE else
                    f"{record['kind']} seed {record['seed']}: " + ("diverged" if record.get("diverged") else
                                                                   f"top-1 {100 * record['top1']:.2f}%"))
            logger.info(f"{record['arch_id']} {what} ({record['seconds']:.1f} s)")
            progress.advance(task)
            if on_record is not None:
                on_record(record)

        ran = run_jobs(jobs, partial(Executor, opts, plan, make_runner, score_free), store, devices=devices,
                       deadline=deadline, on_record=record_done)
    report = build_report(opts, plan, store.load(j.key for j in jobs), elapsed=time.time() - start)
    json_path = write_report(report, opts.out)
    png = plot_report(report, opts.png)
    print_summary(report, console, seeds=len(opts.seeds))
    console.print(f"wrote {json_path}" + (f" and {png}" if png else ""))
    return FidelityResult(report, json_path, png, ran)


__all__ = ["FidelityResult", "run_fidelity"]
