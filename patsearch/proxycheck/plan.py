"""The networks of a proxy check and its trainings: the plan (random networks within the budget plus the named
variants), one job per training and free score, and the executor that runs one job in a worker."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.proxycheck.options import FREE, REFERENCE, FidelityOptions, job_settings, proxy_kinds
from patsearch.search.jobs import Job, RecordStore
from patsearch.search.proxy import ProxySettings, make_proxy_runner


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
    default_device = opts.profile
    if default_device is None:
        from patsearch.search.options import default_profile

        default_device = default_profile()
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


__all__ = ["Executor", "arch_key", "free_scores", "import_records", "make_jobs", "plan_networks", "reference_key"]
