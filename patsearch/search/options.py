"""The search's options: :class:`SearchOptions` and its checks, the rungs and study name they imply, and the
profile a constraint without its own table is measured on."""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patsearch.arch import is_int
from patsearch.config import OptionsMixin, take_alias
from patsearch.errors import UserError
from patsearch.search.constraints import LATENCY
from patsearch.search.objective import OBJECTIVES, PARETO
from patsearch.search.proxy import ProxySettings, fold_proxy_flags, proxy_settings
from patsearch.search.rungs import Rungs
from patsearch.search.samplers import SAMPLERS
from patsearch.search.storage import DEFAULT_HEARTBEAT_INTERVAL

DEFAULT_TRIALS = 8


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
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL
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



def default_profile() -> str:
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
        # an lr or batch of one's own: another study (the names of studies without them stay as they were)
        identity += "".join(f"|{k}={v}" for k, v in (("lr", proxy.lr), ("batch", proxy.batch_size)) if v is not None)
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
        raise error(f"unknown --sampler {opts.sampler!r}; choose from {', '.join(SAMPLERS)}")
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
