"""One search worker process for the multi-process tests: the real search entry point, a stand-in trainer.

Usage: python search_worker.py --storage URL --profile PATH --budget 5ms --trials N --study NAME --runs-dir DIR
       [--sleep SECONDS_PER_EPOCH] [--n-jobs K] [--marker FILE [--marker-epochs E]] [--seed S] [--rungs 2,4,8]
       [--calls FILE] [--via-cli 1]

``--marker`` is created when this process starts training its first candidate (with ``--marker-epochs``: its first
training of that length, e.g. a multi-fidelity rung), which then never finishes: the process waits there until
the test kills it, so the kill always lands mid-trial (no timing window). ``--calls`` appends one line per
training started: ``epochs seed embed_dim depths``. ``--via-cli 1`` runs the `patsearch search` command itself (its
signal handling, messages and exit codes) with the stand-in trainer in place of the real one.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_helpers import HEARTBEAT_S, fake_proxy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--budget", default="5ms")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--study", required=True)
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--sleep", type=float, default=0.1)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--marker")
    ap.add_argument("--marker-epochs", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--rungs")
    ap.add_argument("--calls")
    ap.add_argument("--via-cli", type=int, default=0)
    args = ap.parse_args()

    from patsearch import log
    from patsearch.errors import UserError
    from patsearch.profiler import load_profile
    from patsearch.search.api import SearchOptions, run_search

    def slow_score(arch, epochs=None, seed=0):
        if args.marker and (args.marker_epochs is None or epochs == args.marker_epochs):
            Path(args.marker).write_text("training\n")
            while True:  # mid-trial until killed; heartbeats keep beating meanwhile. A sleep, not an Event wait:
                time.sleep(0.05)  # an interruption raised in a worker thread must get through (see run_workers)
        time.sleep(args.sleep)
        gain = 0.001 * (epochs or 2) * arch.embed_dim / 16  # longer training favours wider networks
        return min(0.95, 0.2 + 0.01 * arch.embed_dim + 0.02 * sum(arch.depths) + gain + 0.001 * (seed or 0))

    base = fake_proxy(slow_score, epochs=2)

    def run_proxy(arch, on_epoch_end=None, seed=None, epochs=None):
        if args.calls:
            with open(args.calls, "a") as log:
                log.write(f"{epochs or 2} {seed or 0} {arch.embed_dim} {list(arch.depths)}\n")
        if epochs is not None:  # a re-training: one call, the rung's length
            return slow_score(arch, epochs=epochs, seed=seed)

        def slow_epoch(epoch, top1):
            time.sleep(args.sleep)
            if on_epoch_end is not None:
                on_epoch_end(epoch, top1)
        return base(arch, on_epoch_end=slow_epoch)

    run_proxy.num_classes = 10
    if args.via_cli:
        return _via_cli(args, run_proxy)
    opts = SearchOptions(latency_budgets=[f"{args.profile}={args.budget}"], space="tiny", trials=args.trials,
                         storage=args.storage, study_name=args.study, n_jobs=args.n_jobs,
                         heartbeat_interval=HEARTBEAT_S, runs_dir=args.runs_dir, count_costs=False, plots=False,
                         baselines="none", seed=args.seed, rungs=args.rungs, pruner="none")
    log.configure()  # notes on stderr, as the CLI shows them
    try:
        run_search(opts, run_proxy=run_proxy, load_profile=lambda d: load_profile(d, check=False))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _via_cli(args, run_proxy) -> int:
    import cli
    from patsearch.search import api

    api.make_proxy_runner = lambda *a, **k: run_proxy
    sys.argv = ["patsearch", "--quiet", "search", "--latency-budget", f"{args.profile}={args.budget}", "--space",
                "tiny", "--trials", str(args.trials), "--study-name", args.study, "--runs-dir", args.runs_dir,
                "--heartbeat-interval", str(HEARTBEAT_S), "--baselines", "none", "--no-plots", "--proxy-epochs", "2"]
    if args.storage:
        sys.argv += ["--storage", args.storage]
    if args.n_jobs > 1:
        sys.argv += ["--n-jobs", str(args.n_jobs)]
    cli.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
