"""``patsearch search``: :func:`run_search`, the library entry point the CLI wraps, which runs (or resumes) a study
and writes its results; each ``--gpus`` worker process runs it too (:func:`_gpu_worker`).

Its pieces: :mod:`~patsearch.search.options` (what it accepts), :mod:`~patsearch.search.in_process` and
:mod:`~patsearch.search.gpu_workers` (the two ways trials run), :mod:`~patsearch.search.report` (the files).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import ensure_writable
from patsearch.search.baselines import enqueue_baselines, select_baselines
from patsearch.search.constraints import (
    SHARE_SAMPLES,
    check_achievable,
    feasible_share,
    load_constraints,
    parse_constraints,
)
from patsearch.search.gpu_workers import run_gpu_processes, where_proxies_train, worker_gpus, worker_seed
from patsearch.search.in_process import run_in_process, threads_per_job
from patsearch.search.objective import PARETO, RETRAINING_DIR, Objective, directions
from patsearch.search.options import SearchOptions, default_profile, default_study_name, resolve_rungs
from patsearch.search.proxy import make_proxy_runner
from patsearch.search.redact import install_log_redaction, redact_url, scrub
from patsearch.search.report import val_images, write_results
from patsearch.search.results import fill_costs, find_fidelity
from patsearch.search.samplers import make_pruner, make_sampler
from patsearch.search.storage import StorageError, StorageSpec, parse_storage
from patsearch.search.study import create_or_load_study, join_study, open_storage
from patsearch.search.summary import comparison, rung_table, summary_notes, summary_table
from patsearch.search.worker_loop import run_worker

# SearchOptions stays importable from here: ``from patsearch.search.api import SearchOptions, run_search``.
__all__ = ["OPTUNA_TRIAL_LOGGER", "SearchOptions", "SearchOutcome", "run_search"]

logger = logging.getLogger("patsearch.search")

OPTUNA_TRIAL_LOGGER = "optuna.study._optimize"  # logs each failed trial, an interrupted one with its traceback


@dataclass
class SearchOutcome:
    study_name: str
    storage: str  # redacted
    out_dir: Path
    best_yaml: Path | None
    files: list[Path]
    notes: list[str]
    ran: int
    study: Any = None


def _count_costs(arch: dict | Any, resolution: int) -> tuple[int, int]:
    from patsearch.counting import count_flops, count_params
    from patsearch.models import create_model

    model = create_model(arch)
    return count_params(model), count_flops(model, resolution)


def _counting(missing: list, console) -> Iterator:
    """The rows to count, with a line saying what happens and progress (a bar on a terminal, else a line each)."""
    from patsearch.progress import progress_bar

    console.print(f"counting params and FLOPs of {len(missing)} network(s) for the summary (kept in the study: "
                  "later runs and --show reuse them)")
    if not console.is_terminal:
        for i, row in enumerate(missing, 1):
            yield row
            console.print(f"  params/FLOPs {i}/{len(missing)}: trial {row.number}")
        return
    with progress_bar(console=console, transient=True) as progress:
        yield from progress.track(missing, description="params/FLOPs")


def run_search(opts: SearchOptions, *, console=None, run_proxy: Callable[..., float] | None = None,
               load_profile: Callable[[str], Any] | None = None, worker_index: int = 0) -> SearchOutcome:
    """Run (or resume) a constrained search and write its results under ``<runs_dir>/<study>/``.

    ``run_proxy`` and ``load_profile`` replace the trainer and the profile loader (tests use tiny stand-ins).
    ``worker_index`` > 0 is a ``--gpus`` worker process (:func:`_gpu_worker`): it claims trials and reports
    nothing, with a sampler seed of its own so that workers starting together do not propose the same candidates.
    """
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=False)
    ensure_writable(opts.runs_dir, "--runs-dir", folder=True, example="runs")
    # The proxy's device, resolved once by the options (a bad or absent one fails before any study work); the
    # runner, the recipe and the estimates take it from here.
    device = opts.proxy_device
    gpus = worker_gpus(opts) if not worker_index else None
    if gpus is not None and len(gpus) == 1:  # one GPU: this process is its worker
        import torch

        opts = dataclasses.replace(opts, proxy=dataclasses.replace(opts.proxy, device=f"cuda:{gpus[0]}"))
        device = torch.device("cuda", gpus[0])
    specs = parse_constraints(opts.latency_budgets, opts.min_throughputs)
    proxy_device = getattr(run_proxy, "device", None) or device
    device_type = getattr(proxy_device, "type", str(proxy_device))
    rungs = resolve_rungs(opts, device_type)
    # The first rung is the proxy; the recipe is named once here, so the study records which one trained.
    opts = dataclasses.replace(opts, proxy=dataclasses.replace(
        opts.proxy, epochs=opts.proxy.epochs if rungs is None else rungs.epochs[0],
        recipe=opts.proxy.recipe_for(device_type)))
    if run_proxy is None:  # the real proxy training: a set smaller than one batch fails every trial alike
        opts.proxy.check_batch(device_type)

    from patsearch.space import load_space

    space = load_space(opts.space)
    if load_profile is None:
        from patsearch.profiler.adapt import load_or_adapt

        def load_profile(device: str):
            import warnings

            from patsearch.profiler import StaleProfileWarning

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", StaleProfileWarning)
                profile = load_or_adapt(device, space=space, allow_stale=opts.allow_stale_profile,
                                        note=lambda text: logger.info("note: %s", text))
            for w in caught:  # one line each, not Python's warning format
                logger.info("note: %s", w.message)
            return profile
    constraints = load_constraints(specs, default_device=opts.profile or default_profile(), loader=load_profile)
    best_possible = check_achievable(space, constraints)
    # workers join a study whose config the parent already stored; only the parent reports the share
    share = None if worker_index else feasible_share(space, constraints)

    study_name = opts.study_name or default_study_name(space.name, constraints, opts.objective, opts.proxy, rungs)
    spec = parse_storage(opts.storage, study_name, opts.runs_dir)
    install_log_redaction(spec.url)
    out_dir = Path(opts.runs_dir) / study_name

    max_baselines = max(1, opts.trials // 3)
    baselines, notes = select_baselines(space, constraints, opts.baselines, max_count=max_baselines)
    multi = opts.objective == PARETO
    pruner = make_pruner(opts.pruner, multi_objective=multi, epochs=opts.proxy.epochs)
    config = {
        "constraints": [c.to_dict() for c in constraints],
        "space": space.name,
        "data": opts.proxy.data_id(),
        "proxy_epochs": opts.proxy.epochs,
        "proxy_resolution": opts.proxy.resolution,
        "recipe": opts.proxy.recipe,
        "proxy_lr": opts.proxy.lr,  # None: the recipe's; the ranking moves with the lr, so it is the study's
        "proxy_batch_size": opts.proxy.batch_size,
        "objective": opts.objective,
        "trials": opts.trials,
        "sampler": opts.sampler,
        "seed": opts.seed,
        "best_possible": best_possible,
        "feasible_share": None if share is None else round(share, 4),
        "baselines": [b.name for b in baselines],
        "val_images": val_images(opts.proxy),  # what each score's binomial standard error is computed on
        "rungs": None if rungs is None else rungs.to_dict(),
    }

    storage = open_storage(spec, heartbeat_interval=opts.heartbeat_interval)
    samplers: list[Any] = []  # the worker's sampler, made once the storage has handed out its identity

    def on_create(new_study) -> None:
        enqueue_baselines(new_study, baselines)

    def make_study():
        return create_or_load_study(
            spec, study_name, directions=directions(opts.objective, constraints),
            sampler=samplers[0] if samplers else None, pruner=pruner,
            storage=storage, config=config, on_create=on_create, heartbeat_interval=opts.heartbeat_interval)

    try:
        main_study = make_study()
        identity = join_study(main_study, spec)
    except UserError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot open study {study_name!r} in {spec.display}: "
                           f"{scrub(str(exc), spec.url).splitlines()[0]}") from None
    samplers.append(make_sampler(opts.sampler, seed=worker_seed(opts.seed, identity), n_trials=opts.trials,
                                 multi_objective=multi))
    main_study.sampler = samplers[0]
    advance = None if rungs is None else (
        lambda study, trials: rungs.advance(study, trials, base_seed=opts.proxy.seed))

    if run_proxy is None:
        # One in-process worker logs each training's progress; several (threads, --gpus processes) would interleave.
        run_proxy = make_proxy_runner(opts.proxy, device=device, threads=threads_per_job(opts.n_jobs),
                                      progress=opts.n_jobs == 1 and not worker_index and not opts.gpus)
    num_classes = getattr(run_proxy, "num_classes", 10)
    objective_factory = lambda: Objective(space=space, constraints=constraints, run_proxy=run_proxy,  # noqa: E731
                                          objective=opts.objective,
                                          chance=1.0 / max(2, num_classes),
                                          retrain_dir=out_dir / RETRAINING_DIR)
    if worker_index:  # a --gpus worker process: claim and train trials; the parent reports and writes results
        deadline = time.time() + opts.timeout if opts.timeout else None
        stats = run_worker(main_study, objective_factory(), spec=spec, n_trials=opts.trials,
                           deadline=deadline, heartbeats=spec.heartbeats,
                           heartbeat_interval=opts.heartbeat_interval,
                           max_infeasible=max(200, 50 * opts.trials), advance=advance)
        return SearchOutcome(study_name, spec.display, out_dir, None, [], notes, stats.ran, main_study)

    logger.info(f"search {study_name}: " + " AND ".join(c.describe() for c in constraints)
                + f" | space {space.name} ({space.size():,} networks) | storage {spec.display}"
                + f" | proxy on {where_proxies_train(opts, gpus, run_proxy)}")
    for c in constraints:
        logger.info(f"  best achievable {c.device} {c.kind}: {c.format(best_possible[c.key])}")
    logger.info(f"  {'the constraints admit' if len(constraints) > 1 else 'the constraint admits'} about "
                f"{100 * share:.1f}% of the space ({min(SHARE_SAMPLES, space.size()):,} random networks predicted; "
                "the sampler's proposals outside it are not trained)")
    if baselines:
        logger.info("  baselines: " + ", ".join(
            f"{b.name} ({', '.join(c.format(b.predicted[c.key]) for c in constraints)})" for b in baselines))
    for note in notes:
        logger.info(f"  not a baseline: {note}")
    planned = (rungs.planned_epochs(opts.trials, len(baselines)) if rungs is not None
               else opts.trials * opts.proxy.epochs)
    if rungs is not None:
        logger.info(f"  rungs: {rungs.describe()}; {planned:,} training epochs planned in all ({opts.trials} x "
                    f"{rungs.epochs[0]} at the first rung)")

    if gpus is not None and len(gpus) > 1:
        ran = run_gpu_processes(main_study, opts, gpus, console, constraints, planned, target=_gpu_worker)
    else:
        ran = run_in_process(main_study, make_study, objective_factory, spec, opts, console, constraints,
                             device_type, planned, advance=advance)

    final = main_study
    confirm_top = 0 if rungs is not None else _confirm_top(opts, run_proxy)
    if confirm_top:
        from patsearch.search.confirm import run_confirmation

        ran += run_confirmation(final, run_proxy, top=confirm_top, seeds=opts.confirm_seeds,
                                base_seed=opts.proxy.seed, chance=1.0 / max(2, num_classes), console=console)
    if opts.count_costs:  # params and FLOPs of the rows the summary shows (fvcore takes seconds per network)
        fill_costs(final, _count_costs, track=lambda missing: _counting(missing, console))
    fidelity = find_fidelity(final, opts.fidelity, opts.runs_dir)
    result = write_results(final, out_dir, plots=opts.plots, fidelity=fidelity)
    console.print(summary_table(final, fidelity=fidelity))
    if rungs is not None:
        console.print(rung_table(final))
    console.print(comparison(final, fidelity))
    for line in summary_notes(final, fidelity):
        console.print(escape(line), style="yellow" if line.startswith("warning") else None)
    for path in result.files:
        console.print(f"wrote {path}")
    for note in result.notes:
        logger.info(note)
    console.print(f"dashboard: optuna-dashboard {_dashboard_url(spec)}")
    return SearchOutcome(study_name, spec.display, out_dir, result.best_yaml, result.files, notes + result.notes,
                         ran, final)


DEFAULT_CONFIRM_TOP_GPU = 3


def _confirm_top(opts: SearchOptions, run_proxy: Any) -> int:
    """``--confirm-top`` as given, else 3 when proxies train on a GPU and 0 on a CPU or for Pareto studies."""
    if opts.confirm_top is not None:
        return opts.confirm_top
    device = getattr(run_proxy, "device", None)
    on_gpu = getattr(device, "type", None) == "cuda"
    return DEFAULT_CONFIRM_TOP_GPU if on_gpu and opts.objective != PARETO else 0


def _gpu_worker(opts: SearchOptions, gpu: int | None, index: int, errors) -> None:
    """One worker process: pin its GPU, rebuild the search from the options, claim trials until the study is full.

    ``gpu=None`` runs the same code on the CPU (tests exercise the process plumbing that way).
    """
    if gpu is not None:  # before CUDA initialises in this fresh (spawned) interpreter: it sees one GPU, cuda:0
        from patsearch.train.distributed import pin_visible_gpu

        pin_visible_gpu(gpu)
        opts = dataclasses.replace(opts, proxy=dataclasses.replace(opts.proxy, device="cuda"))
    from rich.console import Console

    from patsearch.termination import quiet_interruptions, sigterm_as_interrupt

    try:  # the parent forwards a SIGTERM (a scheduler may send its own); the parent reports the interruption
        with sigterm_as_interrupt(), quiet_interruptions(OPTUNA_TRIAL_LOGGER):
            run_search(opts, console=Console(quiet=True), worker_index=index + 1)
    except KeyboardInterrupt:
        pass  # run_worker queued the running trial again; the parent reports the interruption
    except UserError as exc:
        errors.put(str(exc))
    except BaseException as exc:  # one line to the parent; the worker's traceback goes to its stderr
        errors.put(scrub(f"{type(exc).__name__}: {exc}", opts.storage or "").splitlines()[0])
        raise


def _dashboard_url(spec: StorageSpec) -> str:
    if spec.kind == "journal":
        return str(spec.path)
    return redact_url(spec.url)  # with the driver SQLAlchemy needs; put the password back in yourself
