"""``--gpus``: which GPUs get a worker process, the sampler seed of each worker joining a study, and the parent
that spawns one process per GPU and follows the study as they fill it."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from patsearch.errors import UserError
from patsearch.search.epochs import EpochClock, trained_epochs
from patsearch.search.options import SearchOptions

logger = logging.getLogger("patsearch.search")


def worker_gpus(opts: SearchOptions) -> list[int] | None:
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


def worker_seed(seed: int | None, identity: int) -> int | None:
    """The sampler seed of the ``identity``-th worker to join a study: the seed itself for the first (a fresh
    study is reproducible), a stream of its own for every later one (other workers, a resumed run), so that
    workers sharing a study do not propose the same candidates."""
    if seed is None or identity == 0:
        return seed
    return (seed * 1_000_003 + identity * 7919) % (2**31 - 1)


def where_proxies_train(opts: SearchOptions, gpus: list[int] | None, run_proxy: Any) -> str:
    """Where the proxies train, for the search's first line: the GPUs and their worker processes, else the
    runner's device."""
    if gpus is not None and len(gpus) > 1:
        distinct = sorted(set(gpus))
        return (f"{len(distinct)} GPU(s) ({', '.join(gpu_label(g) for g in distinct)}), "
                f"{len(gpus) // len(distinct)} worker process(es) each")
    device = getattr(run_proxy, "device", None)
    return str(device) if device is not None else opts.proxy.device


def gpu_label(index: int | None) -> str:
    """``cuda:I``, plus the GPU it is under an inherited ``CUDA_VISIBLE_DEVICES`` (where its workers will run)."""
    from patsearch.train.distributed import visible_gpu

    if index is None or visible_gpu(index) == str(index):
        return f"cuda:{index}"
    return f"cuda:{index} = CUDA_VISIBLE_DEVICES {visible_gpu(index)}"


def run_gpu_processes(main_study, opts: SearchOptions, gpus: Sequence[int | None], console, constraints,
                      planned_epochs: int, *, target: Callable[[SearchOptions, int | None, int, Any], None]) -> int:
    """One spawned worker process per GPU on the same study; this process reports trials as they finish.

    ``target(opts, gpu, index, errors)`` is each process's work (a module-level function: spawn pickles it by
    name); it puts a one-line message on ``errors`` when it stops on an error."""
    import multiprocessing as mp

    from optuna.trial import TrialState

    from patsearch.progress import progress_bar

    ctx = mp.get_context("spawn")  # fresh interpreters: CUDA must not be initialised before each pins its GPU
    errors = ctx.Queue()
    procs = [ctx.Process(target=target, args=(opts, gpu, i, errors), name=f"patsearch-gpu-{gpu}", daemon=False)
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
