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

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import atomic_save_figure, atomic_write_json, atomic_write_text
from patsearch.ranking import describe_figure, describe_interval, describe_seed_std
from patsearch.search.jobs import Job, RecordStore, parse_devices, run_jobs
from patsearch.search.proxy import ProxySettings, make_proxy_runner
from patsearch.search.results import PROXY_CHECK_DIR

logger = logging.getLogger(__name__)
REFERENCE_FACTOR = 5  # the reference trains on at least this many times the proxy's images (epochs x set size)
MAX_REFERENCE_RESOLUTION = 64  # the default reference doubles the proxy's resolution up to this
PROXY, REFERENCE, FREE = "proxy", "reference", "free"
ALTERNATIVE = "alt"  # job kind prefix of the alternative proxies: alt1, alt2, ...
FREE_SCORES = ("params", "flops", "synflow")
REPORT_VERSION = 1
DEFAULT_FIDELITY_OUT = f"{PROXY_CHECK_DIR}/proxy-fidelity.json"  # under the runs folder (--runs-dir)


def default_reference(proxy: ProxySettings) -> ProxySettings:
    """``REFERENCE_FACTOR`` x the proxy's epochs at twice its resolution (at most 64 px, never lower)."""
    resolution = max(proxy.resolution, min(MAX_REFERENCE_RESOLUTION, 2 * proxy.resolution))
    return dataclasses.replace(proxy, epochs=REFERENCE_FACTOR * proxy.epochs, resolution=resolution)


@dataclass(frozen=True)
class FidelityOptions:
    """What ``patsearch proxy-check`` accepts (see the CLI for the flags)."""

    proxy: ProxySettings = field(default_factory=ProxySettings.for_device)  # the measured default for the device
    reference: ProxySettings | None = None  # None: default_reference(proxy)
    # Other proxies measured against the same reference in the same run (their seeds are ``seeds`` too), so that
    # the default proxy can be picked from one report: each gets its own tau, rho, seed std and cost.
    alternatives: tuple[ProxySettings, ...] = ()
    n: int = 24  # random networks (the variants within budget come on top)
    seeds: tuple[int, ...] = (0, 1)  # proxy seeds; the reference runs with the proxy's first seed ...
    # ... and, with reference_seeds > 1, also with the next seeds (first + 1, ...), averaged: one reference
    # training's own seed noise (about 0.6 points on CIFAR-10) caps the tau any proxy can show against it
    reference_seeds: int = 1
    budget: str = "35ms"
    device_table: str | None = None  # profile for the budget (default: the search's, this machine's CPU table)
    space: str | None = None
    variants: str = "auto"  # auto (every named variant within budget) | none | names
    sample_seed: int = 0
    out: str = f"runs/{DEFAULT_FIDELITY_OUT}"  # a run's output, never the source tree
    gpus: str = "none"  # none | all | N | 0,1 | cpu:N (see jobs.parse_devices: the search's meaning)
    workers_per_gpu: int = 1  # launch-bound proxies: several worker processes share each GPU
    stop_after: float | None = None  # seconds: start no new training after this (the report covers what is done)
    allow_stale_profile: bool = False
    # Alternatives may train on more than 1/REFERENCE_FACTOR of the reference's images (e.g. a 10-epoch proxy
    # against a 25-epoch reference): a cheap look at whether a longer proxy is worth a longer reference. The
    # report gives each alternative its ``reference_factor`` and ``meets_reference_rule``; the proxy itself
    # always keeps the rule.
    exploratory_alternatives: bool = False
    # The records folder of another check: its trainings whose settings (and network) match one of this check's
    # jobs are copied in instead of retrained, e.g. the proxies of a check when only the reference grows longer.
    reuse_records: str | None = None

    def __post_init__(self) -> None:
        if self.reference is None:
            object.__setattr__(self, "reference", default_reference(self.proxy))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "alternatives", tuple(self.alternatives))
        ref, proxy = self.reference, self.proxy
        if not _same_data(ref, proxy):
            raise UserError("the proxy and the reference must train on the same --data")
        if ref.resolution < proxy.resolution:
            raise UserError(f"--reference-resolution {ref.resolution} is below the proxy's {proxy.resolution}; the "
                            "reference must train at the same or a higher resolution")
        for i, alt in enumerate(self.alternatives, 1):
            if not _same_data(alt, proxy):
                raise UserError("--also-proxy must train on the proxy's --data")
            if _settings_dict(alt) == _settings_dict(proxy):
                raise UserError(f"--also-proxy {i} is the same as the proxy; change at least one setting")
            if alt.resolution > ref.resolution:
                raise UserError(f"--also-proxy {i} trains at {alt.resolution} px, above the reference's "
                                f"{ref.resolution} px; the reference must train at the same or a higher resolution")
        ref_per_epoch = ref.train_images()  # each call counts a folder's files: once per settings
        ref_images = ref.epochs * ref_per_epoch
        factors = []
        for i, p in enumerate((proxy, *self.alternatives)):
            per_epoch = p.train_images()
            images = p.epochs * per_epoch
            factors.append(ref_images / max(1, images))
            if ref_images < REFERENCE_FACTOR * images and (i == 0 or not self.exploratory_alternatives):
                need = math.ceil(REFERENCE_FACTOR * images / ref_per_epoch)
                name = "the proxy" if i == 0 else f"--also-proxy {i}"
                raise UserError(f"the reference trains on {ref_images:,} images ({ref.epochs} epochs x "
                                f"{ref_per_epoch:,}), less than {REFERENCE_FACTOR}x {name}'s {images:,} "
                                f"({p.epochs} x {per_epoch:,}); give --reference-epochs {need} or more"
                                + ("" if i == 0 else ", or --exploratory-alternatives to measure it anyway (the "
                                   "report marks it)"))
        # How many times each alternative's training images the reference trains on: counted here once (each
        # count lists a folder), reported by build_report.
        object.__setattr__(self, "_alternative_factors", tuple(factors[1:]))
        if not isinstance(self.workers_per_gpu, int) or self.workers_per_gpu < 1:
            raise UserError(f"--workers-per-gpu must be a positive integer, got {self.workers_per_gpu!r}")
        if not isinstance(self.n, int) or self.n < 3:
            raise UserError(f"--n must be at least 3 networks (a rank correlation needs them), got {self.n!r}")
        if not isinstance(self.reference_seeds, int) or self.reference_seeds < 1:
            raise UserError(f"--reference-seeds must be a positive integer, got {self.reference_seeds!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds must list distinct integers, got {list(self.seeds)}")
        if self.stop_after is not None and self.stop_after <= 0:
            raise UserError(f"--stop-after must be a positive number of seconds, got {self.stop_after}")
        if self.reuse_records is not None and not (Path(str(self.reuse_records)) / "plan.json").is_file():
            raise UserError(f"--reuse-records {self.reuse_records}: no plan.json there; give the .records folder of "
                            "an earlier proxy-check (it sits beside that check's report)")
        if not str(self.out).endswith(".json"):
            raise UserError(f"--out must name a .json file (the PNG goes beside it), got {self.out!r}")

    @property
    def alternative_reference_factors(self) -> tuple[float, ...]:
        """How many times each alternative's training images (epochs x set size) the reference trains on."""
        return self._alternative_factors

    @property
    def records_dir(self) -> Path:
        out = Path(self.out)
        return out.with_name(out.stem + ".records")

    @property
    def png(self) -> Path:
        return Path(self.out).with_suffix(".png")

    def settings(self) -> dict[str, Any]:
        """What defines the measurement (stored in the report and compared when a run resumes)."""
        out = {"proxy": _settings_dict(self.proxy), "reference": _settings_dict(self.reference),
                "seeds": list(self.seeds), "n": self.n, "budget": self.budget, "device_table": self.device_table,
                "space": self.space, "variants": self.variants, "sample_seed": self.sample_seed}
        if self.alternatives:  # absent when there are none: reports and records of earlier runs stay resumable
            out["alternatives"] = [_settings_dict(a) for a in self.alternatives]
        if self.reference_seeds > 1:  # likewise
            out["reference_seeds"] = self.reference_seeds
        return out

    def reference_seed_list(self) -> list[int]:
        return [self.seeds[0] + k for k in range(self.reference_seeds)]

    def proxy_for(self, kind: str) -> ProxySettings:
        """The settings a job kind trains with: the proxy, an alternative (``alt1``...) or the reference."""
        if kind == PROXY:
            return self.proxy
        if kind == REFERENCE:
            return self.reference
        if kind.startswith(ALTERNATIVE) and kind[len(ALTERNATIVE):].isdigit():
            return self.alternatives[int(kind[len(ALTERNATIVE):]) - 1]
        raise ValueError(f"no proxy settings for job kind {kind!r}")


def _same_data(a: ProxySettings, b: ProxySettings) -> bool:
    """Both on the synthetic set, or both on the same folder."""
    if a.data is None or b.data is None:
        return a.data is None and b.data is None
    return Path(a.data).resolve() == Path(b.data).resolve()


def _settings_dict(s: ProxySettings) -> dict[str, Any]:
    # Where and how fast it runs (device, loader workers, subset folder, CUDA graphs) does not change what is
    # measured.
    d = {k: v for k, v in dataclasses.asdict(s).items()
         if k not in ("device", "workers", "subset_dir", "data", "cuda_graph")}
    d["data_id"] = s.data_id()
    d["recipe"] = s.recipe_for()
    return d


def job_settings(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The training settings of each job kind of a check's stored settings, without the seed (each job has its own)."""
    kinds = {PROXY: settings["proxy"], REFERENCE: settings["reference"]}
    kinds.update({f"{ALTERNATIVE}{i}": alt for i, alt in enumerate(settings.get("alternatives", []), 1)})
    return {kind: {k: v for k, v in d.items() if k != "seed"} for kind, d in kinds.items()}


def arch_key(arch: dict[str, Any]) -> str:
    """A network's identity across checks (their ids, r00 ..., are per check): its architecture as canonical JSON."""
    return json.dumps(arch, sort_keys=True)


def import_records(opts: FidelityOptions, plan: Sequence[dict[str, Any]], jobs: Sequence[Job],
                   store: RecordStore) -> int:
    """Copy into ``store`` the trainings of the check at ``opts.reuse_records`` that one of ``jobs`` would repeat:
    the same network, training settings and seed (free scores: the same network and reference resolution).
    Returns how many records were copied; each keeps a ``reused_from`` field."""
    source = Path(str(opts.reuse_records))
    plan_path = source / "plan.json"
    try:
        other = json.loads(plan_path.read_text())
        their_kinds = job_settings(other["settings"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"--reuse-records {source}: its plan.json is not a proxy-check plan; give the .records "
                        "folder of an earlier proxy-check") from None
    my_kinds = job_settings(opts.settings())
    same_kinds = {mine: [theirs for theirs, t in their_kinds.items() if t == m] for mine, m in my_kinds.items()}
    same_kinds[FREE] = [FREE] if their_kinds[REFERENCE]["resolution"] == my_kinds[REFERENCE]["resolution"] else []
    their_id = {arch_key(row["arch"]): row["id"] for row in other["plan"]}
    theirs = {(r.get("arch_id"), r.get("kind"), r.get("seed", 0)): r for r in RecordStore(source).load().values()}
    rows = {row["id"]: row for row in plan}
    have = store.load(j.key for j in jobs)
    copied = 0
    for job in jobs:
        arch_id = their_id.get(arch_key(rows[job.arch_id]["arch"]))
        if job.key in have or arch_id is None:
            continue
        for kind in same_kinds.get(job.kind, []):
            record = theirs.get((arch_id, kind, job.seed))
            if record is not None:
                store.write(dict(record, key=job.key, arch_id=job.arch_id, kind=job.kind, reused_from=str(source)))
                copied += 1
                break
    return copied


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


OVERRIDABLE = {"epochs": int, "resolution": int, "train_samples": int, "val_samples": int, "holdout": int,
               "batch_size": int, "lr": float}


def apply_overrides(base: ProxySettings, text: str, what: str = "--also-proxy") -> ProxySettings:
    """``base`` with ``key=value`` pairs applied, e.g. ``epochs=2,resolution=64,train_samples=all``.

    Keys are the fields of :data:`OVERRIDABLE`; ``all`` (sample counts) and ``default`` (batch, lr) clear a field.
    """
    changes: dict[str, Any] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not sep or key not in OVERRIDABLE:
            raise UserError(f"{what} {text!r}: write key=value pairs separated by commas, keys "
                            f"{', '.join(OVERRIDABLE)} (e.g. epochs=2,resolution=64)")
        if value.lower() in ("all", "default", "none"):
            if key in ("epochs", "resolution"):
                raise UserError(f"{what} {text!r}: {key} needs a number")
            changes[key] = None
            continue
        try:
            changes[key] = OVERRIDABLE[key](value)
        except ValueError:
            kind = "an integer" if OVERRIDABLE[key] is int else "a number"
            raise UserError(f"{what} {text!r}: {key}={value} is not {kind}") from None
    if not changes:
        raise UserError(f"{what} {text!r}: give at least one key=value pair (e.g. epochs=2,resolution=64)")
    return dataclasses.replace(base, **changes)


# --- the networks --------------------------------------------------------------------------------------------
def plan_networks(opts: FidelityOptions, *, load_profile: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """``n`` distinct random networks within the budget (seeded), then the named variants within it."""
    import numpy as np

    from patsearch.search.baselines import select_baselines
    from patsearch.search.constraints import check_achievable, load_constraints, parse_constraints
    from patsearch.space import load_space

    space = load_space(opts.space)
    specs = parse_constraints([opts.budget])
    if load_profile is None:
        from patsearch.profiler import load_profile as _load

        def load_profile(device: str):
            return _load(device, allow_stale=opts.allow_stale_profile)
    default_device = opts.device_table
    if default_device is None:
        from patsearch.search.api import _default_device

        default_device = _default_device()
    constraints = load_constraints(specs, default_device=default_device, loader=load_profile)
    check_achievable(space, constraints)
    c = constraints[0]
    rng = np.random.default_rng(opts.sample_seed)
    rows: list[dict[str, Any]] = []
    seen: set = set()
    attempts = 0
    limit = max(2000, 500 * opts.n)
    while len(rows) < opts.n:
        attempts += 1
        if attempts > limit or len(seen) >= space.size():
            raise UserError(f"only {len(rows)} of {opts.n} random networks of space {space.name!r} met "
                            f"{c.describe()} in {attempts - 1} draws; raise --budget or lower --n")
        cand = space.sample(rng)
        if cand in seen:
            continue
        seen.add(cand)
        value = c.predict(cand.arch, cand.resolution)
        if c.feasible(value):
            rows.append({"id": f"r{len(rows):02d}", "source": "random", "arch": cand.arch.to_dict(),
                         "resolution": int(cand.resolution), "predicted": {c.key: value}})
    baselines, _ = select_baselines(space, constraints, opts.variants)
    for b in sorted(baselines, key=lambda b: b.name):
        rows.append({"id": b.name, "source": "variant", "arch": b.arch.replace(name=b.name).to_dict(),
                     "resolution": int(b.resolution), "predicted": dict(b.predicted)})
    for row in rows:
        row["budget"] = {"key": c.key, "limit": c.limit, "kind": c.kind}
    return rows


def proxy_kinds(n_alternatives: int) -> list[str]:
    """The job kinds of the proxies: the proxy, then ``alt1`` ... ``altN``."""
    return [PROXY] + [f"{ALTERNATIVE}{i}" for i in range(1, n_alternatives + 1)]


def reference_key(arch_id: str, index: int, seed: int) -> str:
    """The record key of a reference training: the first seed keeps the plain key of single-seed reports."""
    return f"{arch_id}.reference" if index == 0 else f"{arch_id}.reference.s{seed}"


def make_jobs(plan: Sequence[dict[str, Any]], seeds: Sequence[int], n_alternatives: int = 0,
              reference_seeds: int = 1) -> list[Job]:
    """Per network: the reference seeds first (longest: they balance best across GPUs when taken first), then the
    proxy seeds (and the alternatives'); the free scores last (CPU seconds each)."""
    jobs: list[Job] = []
    for row in plan:
        jobs += [Job(reference_key(row["id"], k, seeds[0] + k), row["id"], REFERENCE, seeds[0] + k)
                 for k in range(reference_seeds)]
        for kind in proxy_kinds(n_alternatives):
            jobs += [Job(f"{row['id']}.{kind}.s{s}", row["id"], kind, s) for s in seeds]
    jobs += [Job(f"{row['id']}.free", row["id"], FREE) for row in plan]
    return jobs


# --- running one job -----------------------------------------------------------------------------------------
class Executor:
    """Runs one job of a plan in this process (one proxy runner per settings, built on first use)."""

    def __init__(self, opts: FidelityOptions, plan: Sequence[dict[str, Any]],
                 make_runner: Callable[[ProxySettings], Callable[..., float]] = make_proxy_runner,
                 score_free: Callable[[Any, int], dict[str, Any]] | None = None) -> None:
        self.opts = opts
        self.plan = {row["id"]: row for row in plan}
        self.make_runner = make_runner
        self.score_free = score_free or free_scores
        self._runners: dict[ProxySettings, Callable[..., float]] = {}

    def runner(self, settings: ProxySettings) -> Callable[..., float]:
        if settings not in self._runners:
            self._runners[settings] = self.make_runner(settings)
        return self._runners[settings]

    def __call__(self, job: Job) -> dict[str, Any]:
        from patsearch.arch import ArchConfig
        from patsearch.search.objective import ProxyDiverged

        row = self.plan[job.arch_id]
        arch = ArchConfig.from_dict(row["arch"])
        record: dict[str, Any] = {"key": job.key, "arch_id": job.arch_id, "kind": job.kind, "seed": job.seed}
        start = time.perf_counter()
        if job.kind == FREE:
            num_classes = getattr(self.runner(self.opts.proxy), "num_classes", arch.num_classes)
            record.update(self.score_free(arch.replace(num_classes=num_classes), self.opts.reference.resolution))
        else:
            settings = dataclasses.replace(self.opts.proxy_for(job.kind), seed=job.seed)
            curve: list[float] = []  # top-1 after each epoch: learning-curve scores can be studied from records
            runner = self.runner(settings)
            try:
                record["top1"] = float(runner(arch, on_epoch_end=lambda _epoch, top1: curve.append(
                    round(float(top1), 6))))
            except ProxyDiverged as exc:  # a measured outcome, not a crash: kept out of the correlations
                record["top1"] = None
                record["diverged"] = str(exc)
            record["curve"] = curve
            history = getattr(runner, "last_history", None) or []  # losses too, where the runner keeps them
            for name in ("val_loss", "train_loss"):
                if history and all(h.get(name) is not None for h in history):
                    record[f"curve_{name}"] = [round(float(h[name]), 6) for h in history]
        record["seconds"] = round(time.perf_counter() - start, 2)
        record["host"] = platform.node()
        record["pid"] = os.getpid()
        record["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        return record


def free_scores(arch, resolution: int) -> dict[str, Any]:
    """Parameters, fvcore FLOPs and synflow of a freshly initialised ``arch`` at ``resolution``."""
    import torch

    from patsearch.counting import count_flops, count_params
    from patsearch.models import create_model
    from patsearch.search.zerocost import synflow

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(arch).eval()
    score = synflow(model, resolution)
    return {"params": count_params(model), "flops": count_flops(model, resolution),
            "synflow": score if math.isfinite(score) else None, "synflow_overflow": not math.isfinite(score)}


# --- the report ----------------------------------------------------------------------------------------------
def build_report(opts: FidelityOptions, plan: Sequence[dict[str, Any]], records: dict[str, dict[str, Any]],
                 *, elapsed: float | None = None) -> dict[str, Any]:
    """The JSON report from the records so far (rows missing a training are listed but not correlated)."""
    import numpy as np

    from patsearch.ranking import average_ranks, bootstrap_interval, kendall_tau, pooled_std, spearman

    kinds = proxy_kinds(len(opts.alternatives))
    rows = []
    for item in plan:
        rid = item["id"]
        by_kind = {kind: [records.get(f"{rid}.{kind}.s{s}", {}).get("top1") for s in opts.seeds] for kind in kinds}
        ref_recs = [records.get(reference_key(rid, k, s), {}) for k, s in enumerate(opts.reference_seed_list())]
        ref_tops = [r.get("top1") for r in ref_recs]
        free = records.get(f"{rid}.free", {})
        diverged = sorted(r["key"] for r in (records.get(f"{rid}.{kind}.s{s}") for kind in kinds for s in opts.seeds)
                          if r and r.get("diverged")) + [r["key"] for r in ref_recs if r.get("diverged")]
        row = {"id": rid, "source": item["source"], "resolution": item["resolution"],
               "predicted": item["predicted"], "budget": item.get("budget"),
               "proxy_top1": by_kind[PROXY], "proxy_mean": _mean_or_none(by_kind[PROXY]),
               "reference_top1": _mean_or_none(ref_tops),  # the mean over the reference seeds
               "params": free.get("params"), "flops": free.get("flops"), "synflow": free.get("synflow"),
               "synflow_overflow": free.get("synflow_overflow", False), "diverged": diverged,
               "seconds": {k: records[k]["seconds"] for k in records if k.startswith(rid + ".")},
               "arch": item["arch"]}
        if opts.alternatives:
            row["alternatives_top1"] = {kind: by_kind[kind] for kind in kinds[1:]}
        if opts.reference_seeds > 1:
            row["reference_seeds_top1"] = ref_tops
        rows.append(row)
    complete = [r for r in rows if r["proxy_mean"] is not None and r["reference_top1"] is not None
                and f"{r['id']}.free" in records]

    def corr(fn, xs, ys) -> float | None:
        value = fn(xs, ys) if len(xs) >= 2 else float("nan")
        return None if value is None or not math.isfinite(value) else round(float(value), 4)

    def stats(kind: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
        """Rank agreement with the reference, seed noise, size bias and cost of one proxy over ``scored`` rows."""
        tops = [r["proxy_top1"] if kind == PROXY else r["alternatives_top1"][kind] for r in scored]
        ref = [r["reference_top1"] for r in scored]
        mean = [float(np.mean(t)) for t in tops]
        seed_std = None
        if len(opts.seeds) >= 2 and scored:
            seed_std = round(100 * pooled_std(tops), 3)  # every row has all seeds: the mean of the variances
        seconds = [r["seconds"].get(f"{r['id']}.{kind}.s{s}") for r in scored for s in opts.seeds]
        seconds = [x for x in seconds if x is not None]
        extra: dict[str, Any] = {}
        curves = [[records.get(f"{r['id']}.{kind}.s{s}", {}).get("curve") for s in opts.seeds] for r in scored]
        if scored and all(c and len(c) >= 2 for per_seed in curves for c in per_seed):
            # Learning-curve scores from the same trainings: the mean of the last two epochs (less end noise) and
            # the mean over all epochs (the area under the curve, which rewards early learners more).
            extra["curve_kendall_tau"] = {
                name: corr(kendall_tau, [float(np.mean([fn(c) for c in per_seed])) for per_seed in curves], ref)
                for name, fn in (("last2", lambda c: np.mean(c[-2:])), ("area", np.mean))}
        losses = [[records.get(f"{r['id']}.{kind}.s{s}", {}).get("curve_val_loss") for s in opts.seeds]
                  for r in scored]
        if scored and all(c for per_seed in losses for c in per_seed):
            # the final validation loss, negated: graded where top-1 counts only the arg-max
            extra.setdefault("curve_kendall_tau", {})["val_loss"] = corr(
                kendall_tau, [-float(np.mean([c[-1] for c in per_seed])) for per_seed in losses], ref)
        interval = bootstrap_interval(mean, ref)
        return {
            "n": len(scored),
            "kendall_tau": corr(kendall_tau, mean, ref),
            # over networks like these: a 95% bootstrap interval (20 networks leave about +-0.2)
            "kendall_tau_ci95": None if interval is None else [round(v, 4) for v in interval],
            "spearman": corr(spearman, mean, ref),
            "seed_std": seed_std,
            "single_seed_kendall_tau": {str(s): corr(kendall_tau, [t[i] for t in tops], ref)
                                        for i, s in enumerate(opts.seeds)},
            # Item 5's question: does the proxy reward size less than the longer training does (favouring small
            # networks that merely learn fastest)? Both taus are against parameter counts.
            "size_bias": {"proxy_vs_params": corr(kendall_tau, mean, [r["params"] for r in scored]),
                          "reference_vs_params": corr(kendall_tau, ref, [r["params"] for r in scored])},
            "mean_seconds": round(float(np.mean(seconds)), 2) if seconds else None,
            **extra,
        }

    ref = [r["reference_top1"] for r in complete]
    baselines, baselines_rho = {}, {}
    for name in FREE_SCORES:
        # Ranks, not values: an overflowed synflow (inf) ranks above every finite one and ties with the others.
        vals = [math.inf if (name == "synflow" and r["synflow_overflow"]) else r[name] for r in complete]
        if any(v is None for v in vals):
            baselines[name] = baselines_rho[name] = None
            continue
        ranks = average_ranks(vals) if vals else []
        baselines[name] = corr(kendall_tau, ranks, ref)
        baselines_rho[name] = corr(spearman, ranks, ref)
    main = stats(PROXY, complete)
    alternatives = []
    for kind, settings, factor in zip(kinds[1:], opts.alternatives, opts.alternative_reference_factors,
                                     strict=True):
        scored = [r for r in rows if r["reference_top1"] is not None and f"{r['id']}.free" in records
                  and all(t is not None for t in r["alternatives_top1"][kind])]
        alternatives.append({"kind": kind, "settings": _settings_dict(settings), **stats(kind, scored),
                             "reference_factor": round(factor, 2),
                             "meets_reference_rule": factor >= REFERENCE_FACTOR})
    tau = main["kendall_tau"]
    extra: dict[str, Any] = {}
    if opts.reference_seeds > 1:
        std = pooled_std([r["reference_seeds_top1"] for r in complete])
        extra["reference_seed_std"] = None if std is None else round(100 * std, 3)
    return {
        "version": REPORT_VERSION,
        "n": len(complete),
        "kendall_tau": tau,
        "kendall_tau_ci95": main["kendall_tau_ci95"],
        "spearman": main["spearman"],
        "seed_std": main["seed_std"],
        "baselines": baselines,
        "baselines_spearman": baselines_rho,
        "single_seed_kendall_tau": main["single_seed_kendall_tau"],
        "size_bias": main["size_bias"],
        "proxy_mean_seconds": main["mean_seconds"],
        **({"curve_kendall_tau": main["curve_kendall_tau"]} if "curve_kendall_tau" in main else {}),
        "beats_free_scores": None if tau is None else all(v is None or tau > v for v in baselines.values()),
        "alternatives": alternatives,
        "complete": len(complete) == len(plan),
        "networks": len(plan),
        **extra,
        "jobs": {"done": len(records),
                 "total": len(make_jobs(plan, opts.seeds, len(opts.alternatives), opts.reference_seeds))},
        "diverged": sorted({k for r in rows for k in r["diverged"]}),
        # Jobs per GPU (CUDA_VISIBLE_DEVICES of the worker that ran them): shows that every GPU took work.
        "jobs_by_device": _count_by(records.values(), "cuda_visible_devices"),
        "training_seconds": {kind: round(sum(r.get("seconds", 0.0) for r in records.values() if r.get("kind") == kind),
                                         1) for kind in (*kinds, REFERENCE, FREE)},
        "settings": opts.settings(),
        "fingerprint": fingerprint(opts.settings()),
        "elapsed_seconds": None if elapsed is None else round(elapsed, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return float(sum(values) / len(values)) if values and all(v is not None for v in values) else None


def _count_by(records, key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        name = str(r.get(key) if r.get(key) is not None else "unset")
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    return atomic_write_json(path, report, indent=2)


def plot_report(report: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Proxy mean top-1 (seed range as bars) vs reference top-1, and log parameters vs reference; PNG."""
    rows = [r for r in report["rows"] if r["proxy_mean"] is not None and r["reference_top1"] is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 5), dpi=110)
    for r in rows:
        x, y = 100 * r["proxy_mean"], 100 * r["reference_top1"]
        lo, hi = 100 * min(r["proxy_top1"]), 100 * max(r["proxy_top1"])
        variant = r["source"] == "variant"
        ax.errorbar([x], [y], xerr=[[x - lo], [hi - x]], fmt="*" if variant else "o",
                    color="tab:red" if variant else "tab:blue", ms=11 if variant else 5, capsize=2, alpha=0.85)
        if variant:
            ax.annotate(r["id"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if r["params"]:
            ax2.scatter([r["params"] / 1e6], [y], marker="*" if variant else "o",
                        color="tab:red" if variant else "tab:gray", s=90 if variant else 20)
    s = report["settings"]
    ax.set_xlabel(f"proxy top-1 (%), mean of {len(s['seeds'])} seeds (bars: seed range); "
                  f"{s['proxy']['epochs']} ep at {s['proxy']['resolution']} px")
    ax.set_ylabel(f"reference top-1 (%), {s['reference']['epochs']} ep at {s['reference']['resolution']} px")
    ci = report.get("kendall_tau_ci95")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    ax.set_title(f"proxy vs reference: tau {describe_figure(report['kendall_tau'])}{interval}, rho "
                 f"{describe_figure(report['spearman'])},\nseed std "
                 f"{describe_seed_std(report['seed_std'], len(s['seeds']))} (n={report['n']})", fontsize=9)
    ax2.set_xscale("log")
    ax2.set_xlabel("parameters (M)")
    ax2.set_ylabel("reference top-1 (%)")
    b = report["baselines"]
    ax2.set_title("free scores, Kendall tau vs reference:\n" + ", ".join(f"{k} {v}" for k, v in b.items()),
                  fontsize=9)
    fig.suptitle(f"proxy fidelity on {s['proxy']['data_id']} ({'complete' if report['complete'] else 'partial'})",
                 fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


# --- the command ---------------------------------------------------------------------------------------------
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
    from rich.markup import escape

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
    state = "complete" if report["complete"] else f"partial ({report['jobs']['done']}/{report['jobs']['total']} " \
                                                  "jobs; rerun the same command to continue)"
    fig, seeds = describe_figure, len(opts.seeds)
    console.print(f"proxy vs reference over {report['n']} networks: Kendall tau {fig(report['kendall_tau'])}"
                  f"{describe_interval(report['kendall_tau_ci95'])}, Spearman "
                  f"{fig(report['spearman'])}, proxy seed std {describe_seed_std(report['seed_std'], seeds)}; free "
                  "scores (tau): " + ", ".join(f"{k} {fig(v)}" for k, v in report["baselines"].items())
                  + escape(f" [{state}]"))
    for alt in report["alternatives"]:
        st = alt["settings"]
        shape = "".join(f", {name} {st[key]}" for key, name in (("batch_size", "batch"), ("lr", "lr"))
                        if st[key] is not None)
        console.print(f"  {alt['kind']} ({st['epochs']} ep at {st['resolution']} px, {st['train_samples'] or 'all'} "
                      f"images{shape}) over {alt['n']} networks: Kendall tau {fig(alt['kendall_tau'])}"
                      f"{describe_interval(alt['kendall_tau_ci95'])}, Spearman "
                      f"{fig(alt['spearman'])}, seed std {describe_seed_std(alt['seed_std'], seeds)}, "
                      f"{fig(alt['mean_seconds'], 1)} s per training"
                      + ("" if alt["meets_reference_rule"] else f" (exploratory: the reference trains on only "
                                                                  f"{alt['reference_factor']}x its images)"))
    console.print(f"wrote {json_path}" + (f" and {png}" if png else ""))
    return FidelityResult(report, json_path, png, ran)


__all__ = ["FidelityOptions", "FidelityResult", "apply_overrides", "arch_key", "build_report", "default_reference",
           "free_scores", "import_records", "job_settings", "make_jobs", "plan_networks", "proxy_kinds",
           "run_fidelity"]
