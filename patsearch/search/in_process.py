"""The search's trials in this process (``--n-jobs`` threads): the threads each job's proxy trains with, a rough
time estimate before the first candidate, and the loop that shows a progress bar and a line per finished trial."""
from __future__ import annotations

import logging
import time

from patsearch.search.constraints import LATENCY
from patsearch.search.epochs import EpochClock, minutes, trained_epochs
from patsearch.search.options import SearchOptions
from patsearch.search.trial_counts import is_distinct_candidate, is_infeasible
from patsearch.search.worker_loop import run_workers

logger = logging.getLogger("patsearch.search")

PROGRESS_INTERVAL_S = 30  # the trainer's plain progress lines (patsearch.train.loop)
TYPICAL_BUDGET_USE = 0.7  # candidates trained under a latency budget use about this share of it (search summaries)


def threads_per_job(n_jobs: int) -> int:
    """The intra-op threads of each of ``n_jobs`` proxy trainings that run side by side in this process."""
    # Only the cores other processes leave free: intra-op threads beyond them oversubscribe a shared host (one
    # FasterNet training step ran at many times its FLOPs' worth beside one busy process).
    from patsearch.host import free_cores

    return max(1, free_cores() // max(1, n_jobs))


def rough_seconds_per_candidate(opts: SearchOptions, constraints, device_type: str | None = None) -> float | None:
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


def run_in_process(main_study, make_study, objective_factory, spec, opts: SearchOptions, console, constraints,
                   device_type: str, planned_epochs: int, advance=None) -> int:
    """Run the study's trials on ``opts.n_jobs`` threads of this process, with a progress bar of planned epochs
    and a line per finished trial; returns how many trials ran."""
    from optuna.trial import TrialState

    from patsearch.progress import progress_bar

    def done_count() -> int:
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) and is_distinct_candidate(t)
                   for t in main_study.get_trials(deepcopy=False))

    def epochs_done() -> int:
        return trained_epochs(main_study.get_trials(deepcopy=False), opts.proxy.epochs)

    primary = constraints[0]
    clock = EpochClock(planned_epochs, epochs_done())
    todo = max(0, opts.trials - done_count())
    if todo:
        guess = rough_seconds_per_candidate(opts, constraints, device_type)
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
            if is_infeasible(trial):
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
        ran = run_workers(make_study, objective_factory, spec=spec, n_trials=opts.trials,
                          n_jobs=opts.n_jobs, timeout=opts.timeout,
                          heartbeat_interval=opts.heartbeat_interval, on_trial_end=on_trial_end,
                          max_infeasible=max(200, 50 * opts.trials), advance=advance)
        progress.update(task, completed=min(epochs_done(), planned_epochs))
    logger.info("ran %d trial(s) in %.0f s", ran, time.time() - start)
    return ran
