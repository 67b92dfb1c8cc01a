"""``patsearch search``: the library entry points the CLI wraps (:func:`run_search`, :func:`show_study`)."""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patsearch.arch import is_int
from patsearch.config import OptionsMixin, take_alias
from patsearch.errors import UserError
from patsearch.io import ensure_writable
from patsearch.search import study as study_mod
from patsearch.search.baselines import enqueue_baselines, select_baselines
from patsearch.search.best_yaml import write_best_yaml, write_front_yaml, write_ranked_yaml
from patsearch.search.constraints import LATENCY, check_achievable, load_constraints, parse_constraints
from patsearch.search.epochs import EpochClock, minutes, trained_epochs
from patsearch.search.objective import OBJECTIVES, PARETO, Objective, directions
from patsearch.search.plots import write_plots
from patsearch.search.proxy import ProxySettings, balanced_subset, fold_proxy_flags, make_proxy_runner, proxy_settings
from patsearch.search.redact import install_log_redaction, redact_url, scrub
from patsearch.search.results import best_row, constraints_of, fill_costs, find_fidelity, finished, pareto_front, rows
from patsearch.search.rungs import Rungs
from patsearch.search.summary import comparison, rung_table, summary_notes, summary_table, write_summary

logger = logging.getLogger("patsearch.search")

DEFAULT_TRIALS = 8
OPTUNA_TRIAL_LOGGER = "optuna.study._optimize"  # logs each failed trial, an interrupted one with its traceback


class SearchOptionsError(UserError, ValueError):
    """A search option (flag, keyword or options-file field) is invalid."""


@dataclass
class SearchOptions(OptionsMixin):
    """Everything ``patsearch search`` accepts (see the CLI for the flags), validated when made. From flags or a
    YAML file, the proxy's flags (``data``, ``proxy_epochs`` ...) fill ``proxy``, and its seed and subset folder
    default to the search's ``seed`` and ``<runs_dir>/.proxy-data``."""

    options_error = SearchOptionsError
    options_what = "search options"

    latency_budgets: Sequence[str] = ()
    min_throughputs: Sequence[str] = ()
    profile: str | None = None  # lookup table of constraints without their own (None: the local CPU's)
    space: str | None = None
    proxy: ProxySettings = field(default_factory=ProxySettings.for_device)  # the measured default for the device
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    seed: int | None = 0  # sampler seed (None: nondeterministic); proxy training uses ProxySettings.seed
    storage: str | None = None
    study_name: str | None = None
    objective: str = "single"
    sampler: str = "tpe"
    pruner: str = "median"
    n_jobs: int = 1
    gpus: str | None = None  # all | N | 0,1: one worker process per GPU on the same study (None: one worker)
    # Several processes per GPU raise a launch-bound proxy's throughput (docs/BENCHMARKS.md).
    workers_per_gpu: int = 1
    baselines: str = "auto"
    runs_dir: str = "runs"
    heartbeat_interval: int = study_mod.DEFAULT_HEARTBEAT_INTERVAL
    allow_stale_profile: bool = False
    count_costs: bool = True
    plots: bool = True
    fidelity: str | None = None  # proxy-check report to state (default: a matching one, see find_fidelity)
    # After the study: train the best ``confirm_top`` searched networks and every baseline with
    # ``confirm_seeds - 1`` more proxy seeds and rank them by the mean (patsearch.search.confirm). 0: off;
    # None: 3 when proxies train on a GPU (seconds each), off on a CPU (minutes each).
    confirm_top: int | None = None
    confirm_seeds: int = 3
    # Multi-fidelity (patsearch.search.rungs): "5,15,45" trains the best third of each rung again for the next
    # rung's epochs, "none" turns it off; None: three rungs at 1x, 3x and 9x the proxy's epochs when proxies train
    # on a GPU (seconds each), off on a CPU (minutes each) and for Pareto studies. The first length replaces
    # the proxy's epochs.
    rungs: str | None = None
    rung_seeds: int = 2  # seeds of the last rung (the winner's score is their mean)
    rung_keep: float = 1 / 3  # share of searched networks each rung trains again

    def __post_init__(self) -> None:
        for name in ("runs_dir", "fidelity", "space", "profile"):  # PathLike -> str: YAML-safe, comparable
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
        self.latency_budgets = tuple(self.latency_budgets or ())
        self.min_throughputs = tuple(self.min_throughputs or ())
        self.proxy = proxy_settings(self.proxy)
        _check_options(self)

    @functools.cached_property
    def proxy_device(self) -> Any:
        """The ``torch.device`` proxies train on: ``proxy.device`` resolved once, on first use (``auto``: the GPU
        when there is one); a one-line error for a device this machine lacks."""
        return self.proxy.torch_device()

    @classmethod
    def fields_from(cls, data: Mapping[str, Any], source: str) -> dict[str, Any]:
        """Fields from fields or the command's flags: ``latency_budget``/``min_throughput`` (repeatable) name the
        lists, ``--device`` is the old spelling of ``--profile``, the proxy's flags fill ``proxy``."""
        out = take_alias(super().fields_from(data, source), "profile_alias", "profile", spelling="--device",
                         error=cls.options_error)
        for flag, name in (("latency_budget", "latency_budgets"), ("min_throughput", "min_throughputs")):
            if flag in out:
                out[name] = out.pop(flag)
        runs_dir = out.get("runs_dir")
        return fold_proxy_flags(out, seed=out.get("seed"),
                                subset_dir=None if runs_dir is None else str(Path(runs_dir) / ".proxy-data"))


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


def _default_device() -> str:
    """This machine's CPU: the profiler's ``load_or_adapt("cpu")`` takes a ``cpu`` table, else a CPU table (such
    as ``epyc``) measured on this hardware, else adapts the nearest shipped table to this host."""
    return "cpu"


def default_study_name(space_name: str, constraints, objective: str, proxy: ProxySettings | None = None,
                       rungs: Rungs | None = None) -> str:
    """Space, constraints, data and proxy shape, readable (``patnet-cpu-lat35ms-synthetic-4ep32px``), plus a short
    digest of the rest of what makes a study different (set sizes, recipe, rungs): a command with other settings
    starts its own study instead of refusing to resume another's."""
    import hashlib

    parts = [space_name]
    for c in constraints:
        dev = re.sub(r"[^A-Za-z0-9]+", "", Path(c.device).stem) or "dev"
        parts.append(f"{dev}-{'lat' if c.kind == LATENCY else 'fps'}{c.limit:g}{'ms' if c.kind == LATENCY else ''}")
    if objective == PARETO:
        parts.append("pareto")
    if proxy is not None:
        data = proxy.data_id()
        parts.append(data.split(":")[1] if data.startswith("folder:") else "synthetic")
        parts.append(f"{proxy.epochs}ep{proxy.resolution}px")
        identity = f"{data}|{proxy.recipe_for()}|{None if rungs is None else rungs.to_dict()}"
        parts.append(hashlib.sha256(identity.encode()).hexdigest()[:6])
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))


def _check_options(opts: SearchOptions) -> None:
    error = SearchOptionsError
    if not is_int(opts.trials) or opts.trials < 1:
        raise error(f"--trials must be at least 1, got {opts.trials}")
    if not is_int(opts.n_jobs) or opts.n_jobs < 1:
        raise error(f"--n-jobs must be at least 1, got {opts.n_jobs}")
    if opts.timeout is not None and opts.timeout <= 0:
        raise error(f"--timeout must be a positive number of seconds, got {opts.timeout}")
    if opts.objective not in OBJECTIVES:
        raise error(f"unknown --objective {opts.objective!r}; choose from {', '.join(OBJECTIVES)}")
    if str(opts.sampler).lower().replace("-", "") not in ("tpe", "nsga2", "nsgaii", "gp", "random"):
        raise error(f"unknown --sampler {opts.sampler!r}; choose from {', '.join(study_mod.SAMPLERS)}")
    if not is_int(opts.heartbeat_interval) or opts.heartbeat_interval < 1:
        raise error("--heartbeat-interval must be at least 1 second")
    if not is_int(opts.workers_per_gpu) or opts.workers_per_gpu < 1:
        raise error(f"--workers-per-gpu must be a positive integer, got {opts.workers_per_gpu!r}")
    if opts.workers_per_gpu > 1 and not opts.gpus:
        raise error("--workers-per-gpu needs --gpus (for example --gpus all --workers-per-gpu 3)")
    if opts.confirm_top is not None and (not is_int(opts.confirm_top) or opts.confirm_top < 0):
        raise error(f"--confirm-top must be a non-negative integer (0: off), got {opts.confirm_top!r}")
    if not is_int(opts.confirm_seeds) or opts.confirm_seeds < 2:
        raise error(f"--confirm-seeds must be an integer of at least 2 (the search's seed and one more), got "
                    f"{opts.confirm_seeds!r}")
    if opts.confirm_top and opts.objective == PARETO:  # auto (None) is simply off for Pareto studies
        raise error("--confirm-top ranks one score by its mean over seeds; drop it for --objective pareto")
    Rungs.check_shape(opts.rung_seeds, opts.rung_keep)  # checked even where no rungs run: a typo is not ignored
    if opts.study_name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", opts.study_name):
        raise error(f"--study-name {opts.study_name!r}: use letters, digits, '-', '_' and '.' only "
                    "(it names the folder under runs/)")


def resolve_rungs(opts: SearchOptions, device_type: str) -> Rungs | None:
    """The search's rungs: as given, else three (1x, 3x, 9x the proxy's epochs) when proxies train on a GPU and the
    study has one objective and no explicit ``--confirm-top``; None for a single-fidelity search."""
    explicit = opts.rungs is not None
    rungs = (Rungs.parse(opts.rungs, top_seeds=opts.rung_seeds, keep=opts.rung_keep) if explicit
             else Rungs.scaled(opts.proxy.epochs, top_seeds=opts.rung_seeds, keep=opts.rung_keep)
             if device_type == "cuda" and opts.objective != PARETO and not opts.confirm_top else None)
    if rungs is not None and explicit and opts.objective == PARETO:
        raise UserError("--rungs ranks one score at growing training lengths; drop it for --objective pareto "
                        "(or pass --rungs none)")
    if rungs is not None and explicit and opts.confirm_top:
        raise UserError("--rungs and --confirm-top both retrain the leaders on more seeds; the last rung already "
                        "trains on --rung-seeds seeds: drop --confirm-top, or pass --rungs none to confirm instead")
    return rungs


def _worker_gpus(opts: SearchOptions) -> list[int] | None:
    """The GPUs that get a worker process each (``--gpus``), checked against the proxy's device."""
    import torch

    from patsearch.search.proxy import parse_gpus

    device = opts.proxy_device
    gpus = parse_gpus(opts.gpus, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if gpus is not None and device.type != "cuda":
        raise UserError(f"--gpus {opts.gpus} trains on GPUs but --proxy-device is {opts.proxy.device}; use "
                        "--proxy-device auto or cuda, or drop --gpus")
    if gpus is not None and opts.n_jobs > 1:
        raise UserError("--gpus already runs one worker per GPU; drop --n-jobs (or use --n-jobs without --gpus)")
    if gpus is not None:
        gpus = [g for g in gpus for _ in range(opts.workers_per_gpu)]  # each GPU's workers side by side
    return gpus


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
    gpus = _worker_gpus(opts) if not worker_index else None
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
    constraints = load_constraints(specs, default_device=opts.profile or _default_device(), loader=load_profile)
    best_possible = check_achievable(space, constraints)

    study_name = opts.study_name or default_study_name(space.name, constraints, opts.objective, opts.proxy, rungs)
    spec = study_mod.parse_storage(opts.storage, study_name, opts.runs_dir)
    install_log_redaction(spec.url)
    out_dir = Path(opts.runs_dir) / study_name

    max_baselines = max(1, opts.trials // 3)
    baselines, notes = select_baselines(space, constraints, opts.baselines, max_count=max_baselines)
    multi = opts.objective == PARETO
    pruner = study_mod.make_pruner(opts.pruner, multi_objective=multi, epochs=opts.proxy.epochs)
    config = {
        "constraints": [c.to_dict() for c in constraints],
        "space": space.name,
        "data": opts.proxy.data_id(),
        "proxy_epochs": opts.proxy.epochs,
        "proxy_resolution": opts.proxy.resolution,
        "recipe": opts.proxy.recipe,
        "objective": opts.objective,
        "trials": opts.trials,
        "sampler": opts.sampler,
        "seed": opts.seed,
        "best_possible": best_possible,
        "baselines": [b.name for b in baselines],
        "val_images": _val_images(opts.proxy),  # what each score's binomial standard error is computed on
        "rungs": None if rungs is None else rungs.to_dict(),
    }

    storage = study_mod.open_storage(spec, heartbeat_interval=opts.heartbeat_interval)
    samplers: list[Any] = []  # the worker's sampler, made once the storage has handed out its identity

    def on_create(new_study) -> None:
        enqueue_baselines(new_study, baselines)

    def make_study():
        return study_mod.create_or_load_study(
            spec, study_name, directions=directions(opts.objective, constraints),
            sampler=samplers[0] if samplers else None, pruner=pruner,
            storage=storage, config=config, on_create=on_create, heartbeat_interval=opts.heartbeat_interval)

    try:
        main_study = make_study()
        identity = study_mod.join_study(main_study, spec)
    except UserError:
        raise
    except Exception as exc:
        raise study_mod.StorageError(f"cannot open study {study_name!r} in {spec.display}: "
                                     f"{scrub(str(exc), spec.url).splitlines()[0]}") from None
    samplers.append(study_mod.make_sampler(opts.sampler, seed=worker_seed(opts.seed, identity), n_trials=opts.trials,
                                           multi_objective=multi))
    main_study.sampler = samplers[0]
    advance = None if rungs is None else (
        lambda study, trials: rungs.advance(study, trials, base_seed=opts.proxy.seed))

    if run_proxy is None:
        # One in-process worker logs each training's progress; several (threads, --gpus processes) would interleave.
        run_proxy = make_proxy_runner(opts.proxy, device=device, threads=_threads_per_job(opts.n_jobs),
                                      progress=opts.n_jobs == 1 and not worker_index and not opts.gpus)
    num_classes = getattr(run_proxy, "num_classes", 10)
    objective_factory = lambda: Objective(space=space, constraints=constraints, run_proxy=run_proxy,  # noqa: E731
                                          objective=opts.objective,
                                          chance=1.0 / max(2, num_classes))
    if worker_index:  # a --gpus worker process: claim and train trials; the parent reports and writes results
        deadline = time.time() + opts.timeout if opts.timeout else None
        stats = study_mod.run_worker(main_study, objective_factory(), spec=spec, n_trials=opts.trials,
                                     deadline=deadline, heartbeats=spec.heartbeats,
                                     heartbeat_interval=opts.heartbeat_interval,
                                     max_infeasible=max(200, 50 * opts.trials), advance=advance)
        return SearchOutcome(study_name, spec.display, out_dir, None, [], notes, stats.ran, main_study)

    logger.info(f"search {study_name}: " + " AND ".join(c.describe() for c in constraints)
                + f" | space {space.name} ({space.size():,} networks) | storage {spec.display}"
                + f" | proxy on {_where(opts, gpus, run_proxy)}")
    for c in constraints:
        logger.info(f"  best achievable {c.device} {c.kind}: {c.format(best_possible[c.key])}")
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
        ran = _run_gpu_processes(main_study, opts, gpus, console, constraints, planned)
    else:
        ran = _run_with_progress(main_study, make_study, objective_factory, spec, opts, console, constraints,
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


def _where(opts: SearchOptions, gpus: list[int] | None, run_proxy: Any) -> str:
    if gpus is not None and len(gpus) > 1:
        distinct = sorted(set(gpus))
        return (f"{len(distinct)} GPU(s) ({', '.join(_gpu_label(g) for g in distinct)}), "
                f"{len(gpus) // len(distinct)} worker process(es) each")
    device = getattr(run_proxy, "device", None)
    return str(device) if device is not None else opts.proxy.device


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


def _gpu_label(index: int | None) -> str:
    """``cuda:I``, plus the GPU it is under an inherited ``CUDA_VISIBLE_DEVICES`` (where its workers will run)."""
    from patsearch.train.distributed import visible_gpu

    if index is None or visible_gpu(index) == str(index):
        return f"cuda:{index}"
    return f"cuda:{index} = CUDA_VISIBLE_DEVICES {visible_gpu(index)}"


def _run_gpu_processes(main_study, opts: SearchOptions, gpus: Sequence[int | None], console, constraints,
                       planned_epochs: int) -> int:
    """One spawned worker process per GPU on the same study; this process reports trials as they finish."""
    import multiprocessing as mp

    from optuna.trial import TrialState

    from patsearch.progress import progress_bar

    ctx = mp.get_context("spawn")  # fresh interpreters: CUDA must not be initialised before each pins its GPU
    errors = ctx.Queue()
    procs = [ctx.Process(target=_gpu_worker, args=(opts, gpu, i, errors), name=f"patsearch-gpu-{gpu}", daemon=False)
             for i, gpu in enumerate(gpus)]
    done_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    seen = {t.number for t in main_study.get_trials(deepcopy=False) if t.state in done_states}
    ran = 0
    primary = constraints[0]
    clock = EpochClock(planned_epochs, trained_epochs(main_study.get_trials(deepcopy=False), opts.proxy.epochs))
    progress = progress_bar(console=console, transient=False, bursty=True)
    task = progress.add_task("epochs", total=planned_epochs, completed=min(clock.done_at_start, planned_epochs))
    for p in procs:
        p.start()
    try:
        progress.start()
        while True:
            alive = [p for p in procs if p.is_alive()]
            trials = main_study.get_trials(deepcopy=False)
            finished = [t for t in trials if t.state in done_states and t.number not in seen]
            if finished:  # one count per poll, however many trials it found finished
                done = trained_epochs(trials, opts.proxy.epochs)
                progress.update(task, completed=min(done, planned_epochs))
            for t in finished:
                seen.add(t.number)
                ran += 1
                top1 = t.user_attrs.get("proxy_top1")
                pred = t.user_attrs.get(f"pred:{primary.key}")
                logger.info(f"trial {t.number}: {t.state.name.lower()}, proxy top-1 "
                            f"{'-' if top1 is None else f'{100 * top1:.2f}%'}, "
                            f"{primary.format(pred) if pred is not None else '-'}; {clock.line(done)}")
            if not errors.empty():
                message = errors.get()
                for p in alive:
                    p.terminate()
                raise UserError(f"a GPU worker stopped: {message}")
            if not alive:
                break
            for p in alive:
                p.join(timeout=2.0 / len(alive))
    except KeyboardInterrupt as exc:
        from patsearch.termination import Terminated

        for p in procs:
            if isinstance(exc, Terminated) and p.is_alive():
                p.terminate()  # a SIGTERM reaches this process only: pass it on, each worker then cleans up
            p.join(timeout=30)  # they got the same Ctrl-C and queue their running trials again
        raise
    finally:
        progress.stop()
    failed = [p for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise UserError(f"{len(failed)} GPU worker process(es) exited with an error (exit code "
                        f"{failed[0].exitcode}); see their messages above and rerun the command to resume")
    return ran


def worker_seed(seed: int | None, identity: int) -> int | None:
    """The sampler seed of the ``identity``-th worker to join a study: the seed itself for the first (a fresh
    study is reproducible), a stream of its own for every later one (other workers, a resumed run), so that
    workers sharing a study do not propose the same candidates."""
    if seed is None or identity == 0:
        return seed
    return (seed * 1_000_003 + identity * 7919) % (2**31 - 1)


def _dashboard_url(spec: study_mod.StorageSpec) -> str:
    if spec.kind == "journal":
        return str(spec.path)
    return redact_url(spec.url)  # with the driver SQLAlchemy needs; put the password back in yourself


def _threads_per_job(n_jobs: int) -> int:
    # Only the cores other processes leave free: intra-op threads beyond them oversubscribe a shared host (one
    # FasterNet training step ran at many times its FLOPs' worth beside one busy process).
    from patsearch.host import free_cores

    return max(1, free_cores() // max(1, n_jobs))


def _run_with_progress(main_study, make_study, objective_factory, spec, opts: SearchOptions, console,
                       constraints, device_type: str, planned_epochs: int, advance=None) -> int:
    from optuna.trial import TrialState

    from patsearch.progress import progress_bar

    def done_count() -> int:
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) and study_mod.is_distinct_candidate(t)
                   for t in main_study.get_trials(deepcopy=False))

    def epochs_done() -> int:
        return trained_epochs(main_study.get_trials(deepcopy=False), opts.proxy.epochs)

    primary = constraints[0]
    clock = EpochClock(planned_epochs, epochs_done())
    todo = max(0, opts.trials - done_count())
    if todo:
        guess = _rough_seconds_per_candidate(opts, constraints, device_type)
        estimate = (f"roughly {minutes(todo * guess / opts.n_jobs)} on this CPU from the table's latency at the "
                    "proxy's resolution; " if guess else "")
        logger.info(f"  plan: {todo} candidate(s) to train ({opts.trials - todo} done) x {opts.proxy.epochs} epochs "
                    f"at {opts.proxy.resolution} px: {estimate}the estimate follows each trained candidate, and each "
                    f"training logs its progress every {PROGRESS_INTERVAL_S} s")
    # The bar counts planned epochs, as the --gpus parent's does: a multi-fidelity search's re-trainings are work
    # that a count of candidates leaves out.
    with progress_bar(console=console, transient=False, bursty=True) as progress:
        task = progress.add_task("epochs", total=planned_epochs, completed=min(clock.done_at_start, planned_epochs))

        def on_trial_end(trial) -> None:
            ua = trial.user_attrs
            pred = ua.get(f"pred:{primary.key}")
            rung = f", rung {ua['rung']}: {ua['rung_epochs']} epochs" if "rung" in ua else ""
            what = f"[{ua.get('baseline') or 'search'}{rung}]"
            if not ua.get("feasible", True):
                line = f"trial {trial.number} {what}: infeasible ({primary.format(pred)}), not trained"
            else:
                top1 = ua.get("proxy_top1")
                if top1 is None and trial.intermediate_values:
                    top1 = trial.intermediate_values[max(trial.intermediate_values)]
                acc = "-" if top1 is None else f"{100 * top1:.2f}%"
                line = (f"trial {trial.number} {what}: {trial.state.name.lower()}, proxy top-1 {acc}, "
                        f"{primary.format(pred) if pred is not None else '-'}")
            done = epochs_done()
            if ua.get("proxy_seconds"):  # something trained: how far the plan is, and the time left at this pace
                line += f"; {clock.line(done)}"
            logger.info(line)
            progress.update(task, completed=min(done, planned_epochs))

        start = time.time()
        ran = study_mod.run_workers(make_study, objective_factory, spec=spec, n_trials=opts.trials,
                                    n_jobs=opts.n_jobs, timeout=opts.timeout,
                                    heartbeat_interval=opts.heartbeat_interval, on_trial_end=on_trial_end,
                                    max_infeasible=max(200, 50 * opts.trials), advance=advance)
        progress.update(task, completed=min(epochs_done(), planned_epochs))
    logger.info("ran %d trial(s) in %.0f s", ran, time.time() - start)
    return ran


PROGRESS_INTERVAL_S = 30  # the trainer's plain progress lines (patsearch.train.loop)
TYPICAL_BUDGET_USE = 0.7  # candidates trained under a latency budget use about this share of it (search summaries)


def _rough_seconds_per_candidate(opts: SearchOptions, constraints, device_type: str | None = None) -> float | None:
    """A CPU proxy's training time guessed before any candidate trained: the primary CPU latency budget's typical
    use, scaled from the table's resolution to the proxy's by pixels, times 3 (forward and backward) per training
    image and 1 per validation image, every epoch. None where that does not apply (throughput tables, a GPU)."""
    primary = constraints[0]
    table = getattr(primary.profile, "protocol", None)
    if primary.kind != LATENCY or getattr(table, "batch", None) != 1 \
            or (device_type or opts.proxy_device.type) != "cpu":
        return None
    per_image_s = TYPICAL_BUDGET_USE * primary.limit / 1000 * (opts.proxy.resolution / 224) ** 2
    if opts.proxy.data is not None:
        return None  # a folder's size is only known once read; the estimate follows the first candidate
    n_train, n_val = opts.proxy.synthetic_sizes()
    return opts.proxy.epochs * per_image_s * (3 * n_train + n_val)


@dataclass
class Written:
    best_yaml: Path | None
    files: list[Path]
    notes: list[str]


def _val_images(proxy: ProxySettings) -> int | None:
    """Validation images each proxy score is measured on (None when the folder cannot be read here)."""
    if proxy.data is None:
        return proxy.synthetic_sizes()[1]
    from patsearch.data.folder import scan_split, split_dir

    try:
        root = Path(proxy.data).expanduser()
        classes, samples = scan_split(split_dir(root, "train"))
        _, val = scan_split(split_dir(root, "val"), classes)
    except Exception:  # the trainer reports a bad folder with its own message
        return None
    if proxy.holdout is not None:  # held out of the training split
        return len(balanced_subset(samples, len(classes), proxy.holdout))
    return len(balanced_subset(val, len(classes), proxy.val_samples))  # what the class-balanced subset keeps


def write_results(study, out_dir: str | os.PathLike, *, plots: bool = True, fidelity=None) -> Written:
    """best.yaml and ranked/rank<k>.yaml (+ pareto.yaml for Pareto studies), summary.md / summary.json and the PNG
    plots."""
    out_dir = Path(out_dir)
    cons = constraints_of(study)
    rs = rows(study)
    files: list[Path] = []
    notes: list[str] = []
    best = best_row(rs)
    best_yaml = None
    if best is not None:
        best_yaml = write_best_yaml(out_dir / "best.yaml", best, study_name=study.study_name, constraints=cons)
        files.append(best_yaml)
        files += write_ranked_yaml(out_dir, [r for r in finished(rs) if r.duplicate_of is None],
                                   study_name=study.study_name, constraints=cons)
    else:
        notes.append("no feasible candidate finished: best.yaml not written")
    if len(study.directions) > 1 and cons:
        front = pareto_front(rs, cons[0].key, cons[0].kind)
        files.append(write_front_yaml(out_dir / "pareto.yaml", front, study_name=study.study_name))
    files += write_summary(study, out_dir, fidelity)
    if plots and finished(rs):
        written, plot_notes = write_plots(study, out_dir)
        files += written
        notes += plot_notes
    return Written(best_yaml, files, notes)


def show_study(study_name: str, *, storage: str | None = None, runs_dir: str = "runs", console=None,
               write: bool = False, fidelity: str | None = None) -> Any:
    """Print the summary of an existing study (and optionally rewrite its result files)."""
    import optuna
    from rich.console import Console

    console = console or Console()
    spec = study_mod.parse_storage(storage, study_name, runs_dir)
    install_log_redaction(spec.url)
    if spec.kind == "sqlite" and spec.path is not None and not spec.path.exists():
        raise UserError(f"no study {study_name!r} under {runs_dir}/ ({spec.display} does not exist); "
                        "pass --storage for a study stored elsewhere")
    storage_obj = study_mod.open_storage(spec)
    try:
        loaded = optuna.load_study(study_name=study_name, storage=storage_obj)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage_obj, include_best_trial=False)]
        raise UserError(f"no study {study_name!r} in {spec.display}; studies there: "
                        f"{', '.join(names) or 'none'}") from None
    found = find_fidelity(loaded, fidelity, runs_dir)
    console.print(summary_table(loaded, fidelity=found))
    if (loaded.user_attrs.get("patsearch_config") or {}).get("rungs"):
        console.print(rung_table(loaded))
    console.print(comparison(loaded, found))
    for line in summary_notes(loaded, found):
        console.print(line, style="yellow" if line.startswith("warning") else None, markup=False)
    if write:
        result = write_results(loaded, Path(runs_dir) / study_name, fidelity=found)
        for path in result.files:
            console.print(f"wrote {path}")
    return loaded
