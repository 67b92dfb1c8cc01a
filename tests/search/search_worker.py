"""One search worker process for the multi-process tests: the real search entry point, a stand-in trainer.

Usage: python search_worker.py --storage URL --profile PATH --budget 5ms --trials N --study NAME --runs-dir DIR
       [--sleep SECONDS_PER_EPOCH] [--n-jobs K] [--marker FILE]

``--marker`` is created when this process starts training its first candidate, which then never finishes: the
process waits there until the test kills it, so the kill always lands mid-trial (no timing window).
"""
from __future__ import annotations

import argparse
import sys
import threading
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
    args = ap.parse_args()

    from patsearch import log
    from patsearch.errors import UserError
    from patsearch.profiler import load_profile
    from patsearch.search.api import SearchOptions, run_search

    def slow_score(arch):
        if args.marker:
            Path(args.marker).write_text("training\n")
            threading.Event().wait()  # mid-trial until SIGKILL; heartbeats keep beating meanwhile
        time.sleep(args.sleep)
        return min(0.95, 0.2 + 0.01 * arch.embed_dim + 0.02 * sum(arch.depths))

    base = fake_proxy(slow_score, epochs=2)

    def run_proxy(arch, on_epoch_end=None):
        def slow_epoch(epoch, top1):
            time.sleep(args.sleep)
            if on_epoch_end is not None:
                on_epoch_end(epoch, top1)
        return base(arch, on_epoch_end=slow_epoch)

    run_proxy.num_classes = 10
    opts = SearchOptions(latency_budgets=[f"{args.profile}={args.budget}"], space="tiny", trials=args.trials,
                         storage=args.storage, study_name=args.study, n_jobs=args.n_jobs,
                         heartbeat_interval=HEARTBEAT_S, runs_dir=args.runs_dir, count_costs=False, plots=False,
                         baselines="none", seed=None)
    log.configure()  # notes on stderr, as the CLI shows them
    try:
        run_search(opts, run_proxy=run_proxy, load_profile=lambda d: load_profile(d, check=False))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
