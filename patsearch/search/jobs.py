"""A resumable list of independent jobs, run in this process or by one worker process per GPU.

Each finished job leaves one small JSON record in a folder, written to a temp name and renamed, so a run that is
killed keeps everything it finished and a rerun does only the rest. With several devices the coordinator puts the
pending jobs on a queue and starts one ``spawn`` process per device (``CUDA_VISIBLE_DEVICES`` set to that GPU
before CUDA starts); each takes the next job when it is free, so long and short jobs balance across GPUs. The
workers write their records themselves (a killed coordinator loses nothing a worker finished).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import atomic_write_text


@dataclass(frozen=True)
class Job:
    key: str  # unique in its list; names the record file
    arch_id: str
    kind: str
    seed: int = 0


class RecordStore:
    """``<folder>/<job key>.json``, one per finished job (atomic writes)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(record["key"])
        atomic_write_text(path, json.dumps(record, sort_keys=True) + "\n")
        return path

    def load(self, keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Finished records by key (only ``keys`` when given); unreadable files count as not finished."""
        if not self.folder.is_dir():
            return {}
        wanted = None if keys is None else set(keys)
        out: dict[str, dict[str, Any]] = {}
        for path in self.folder.glob("*.json"):
            if path.name.startswith(".") or (wanted is not None and path.stem not in wanted):
                continue
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        return out


def parse_devices(spec: str | None) -> list[str]:
    """``--gpus`` for job lists: the GPUs of :func:`patsearch.search.proxy.parse_gpus` (``all``, a count ``N``
    meaning the first N, or indices ``0,1``; the same meaning as the search's flag) as strings, ``none`` for this
    process, plus ``cpu:N`` (N CPU processes, to exercise the multi-process path without a GPU). ``all`` on a host
    without GPUs is ``none``."""
    text = (spec or "none").strip().lower()
    if text in ("", "none", "0gpus"):
        return []
    if text.startswith("cpu:"):
        count = text[4:]
        if not count.isdigit() or int(count) < 1:
            raise UserError(f"--gpus {spec!r}: write cpu:N with N >= 1 worker processes")
        return ["cpu"] * int(count)
    import torch

    from patsearch.search.proxy import parse_gpus

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "all" and available == 0:
        return []
    return [str(i) for i in parse_gpus(text, available) or []]


def run_jobs(jobs: Sequence[Job], make_executor: Callable[[], Callable[[Job], dict[str, Any]]],
             store: RecordStore, *, devices: Sequence[str] = (), deadline: float | None = None,
             on_record: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run the jobs that have no record yet; returns how many finished in this call.

    ``make_executor()`` builds the function that runs one job and returns its record (``key`` included); with
    ``devices`` it is called once in each worker process, so it must be picklable (a module-level callable).
    No job is started after ``deadline`` (a ``time.time()`` value). ``on_record(record)`` is called here, after
    the record is stored, for every finished job.
    """
    done = store.load(j.key for j in jobs)
    pending = [j for j in jobs if j.key not in done]
    if not pending:
        return 0
    if not devices:
        run_one = make_executor()
        finished = 0
        for job in pending:
            if deadline is not None and time.time() > deadline:
                break
            record = run_one(job)
            store.write(record)
            finished += 1
            if on_record is not None:
                on_record(record)
        return finished
    return _run_in_workers(pending, make_executor, store, list(devices), deadline, on_record)


def _run_in_workers(pending: list[Job], make_executor, store: RecordStore, devices: list[str],
                    deadline: float | None, on_record) -> int:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no CUDA state inherited from this one
    jobs_q, results_q = ctx.Queue(), ctx.Queue()
    for job in pending:
        jobs_q.put(asdict(job))
    workers = []
    for slot, device in enumerate(devices[:len(pending)]):
        jobs_q.put(None)
        threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
                      // len(devices))
        proc = ctx.Process(target=_worker, args=(slot, device, threads, make_executor, str(store.folder), jobs_q,
                                                 results_q, deadline), daemon=False)  # its DataLoader forks
        proc.start()
        workers.append(proc)
    finished, exited = 0, 0
    try:
        while exited < len(workers):
            try:
                kind, payload = results_q.get(timeout=2.0)
            except queue.Empty:
                dead = [p for p in workers if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    raise RuntimeError(f"a worker process died (exit code {dead[0].exitcode}); finished jobs are "
                                       "recorded, rerun the same command to continue") from None
                continue
            if kind == "done":
                finished += 1
                if on_record is not None:
                    on_record(payload)
            elif kind == "error":
                raise RuntimeError(f"job {payload[0]} failed: {payload[1]}")
            elif kind == "exit":
                exited += 1
    finally:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()  # a worker exits through Python (see _worker): its atomic write cleans up
            proc.join(timeout=10)
            if proc.is_alive():  # stuck in native code past the grace period
                proc.kill()
                proc.join()
    return finished


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _worker(slot: int, device: str, threads: int, make_executor, folder: str, jobs_q, results_q,
            deadline: float | None) -> None:
    if device != "cpu":
        from patsearch.train.distributed import pin_visible_gpu

        pin_visible_gpu(device)  # before this process starts CUDA
    import torch

    # The coordinator terminates the other workers when a job fails. SIGTERM's default ends the process at once, so
    # a worker inside an atomic write would leave its temp file; as SystemExit it unwinds and the write cleans up.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    torch.set_num_threads(threads)
    store = RecordStore(folder)
    run_one = None
    try:
        while True:
            item = jobs_q.get()
            if item is None:
                break
            if deadline is not None and time.time() > deadline:
                continue  # drain: jobs past the deadline stay pending for the next run
            job = Job(**item)
            try:
                if run_one is None:
                    run_one = make_executor()
                record = run_one(job)
                store.write(record)
            except SystemExit:  # terminated by the coordinator: nothing to report
                raise
            except BaseException as exc:  # reported to the coordinator, which stops the run
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                results_q.put(("error", (job.key, f"{type(exc).__name__}: {first_line}")))
                return
            results_q.put(("done", record))
    finally:
        results_q.put(("exit", slot))


__all__ = ["Job", "RecordStore", "parse_devices", "run_jobs"]
