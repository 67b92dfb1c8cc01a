"""The bad-input and fault sweep: run patsearch as a new user would on inputs that must fail cleanly.

Each case runs in a fresh empty folder (its setup writes what it needs there) and records the exit code, the
number of lines on stderr, the first and last of them, and what the command left behind: files or folders that
were not there before it ran (the setup's own files do not count). A case is ``clean`` when it exits as it
should (rc 2 for bad input), prints no traceback, says it in ``max_lines`` stderr lines or fewer, leaks no
credential and leaves nothing behind except what the case allows (the resumable state of an interrupted run).

Fault cases wait on a marker before they signal, never on a fixed delay: a trial RUNNING in the study (SIGTERM
of a search) or a checkpoint on disk (kill -9 of a training, then ``--resume auto``).

Usage, from the repository root:

    PYTHONPATH=$PWD python benchmarks/bad_input_sweep.py --patsearch ".venv/bin/python -m patsearch" \\
        --out sweep.json [--cases arch_unknown,budget_units] [--list]

It prints a markdown table; ``--out`` gets the same rows as JSON (written atomically).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The password of the storage case holds an '@', as the did; no piece of it may reach the output.
SECRET_PIECES = ("s3cret", "tail9")
TINY_ARCH = "embed_dim: 8\ndepths: [1, 1, 1, 1]\nhead_width: 32\nname: tiny\n"
TINY_TRAIN = ["--arch", "tiny.yaml", "--recipe", "proxy", "--device", "cpu", "--resolution", "32", "--epochs", "1",
              "--batch-size", "8", "--no-progress"]
# The file loader (timm's transforms, DataLoader processes with --workers): a recipe that crops by resizing.
FILES_TRAIN = [*TINY_TRAIN[:2], "--recipe", "patnet_t0", *TINY_TRAIN[4:]]
TINY_SEARCH = ["--latency-budget", "40ms", "--trials", "2", "--proxy-epochs", "1", "--proxy-train-samples", "32",
               "--proxy-val-samples", "16", "--proxy-batch-size", "16", "--baselines", "none", "--no-plots"]
COLUMNS = ("case", "command", "rc", "stderr lines", "first stderr line", "left behind", "clean")
TIMEOUT_S = 300


@dataclass(frozen=True)
class Case:
    """One sweep entry. ``args`` follow the patsearch command; ``setup`` names steps of :data:`SETUP` run first,
    in order. ``fault`` is None, ``"sigterm"`` (SIGTERM once the study has a RUNNING trial) or ``"kill9"``
    (SIGKILL once ``run/latest.pt`` exists, then the same command again with ``--resume auto``).
    ``allowed_leftovers`` are glob patterns of top-level names the case may keep (an interrupted run's state)."""

    name: str
    args: tuple[str, ...]
    setup: tuple[str, ...] = ()
    expect_rc: int = 2
    max_lines: int = 1
    fault: str | None = None
    allowed_leftovers: tuple[str, ...] = ()


def _images(root: Path, split: str, classes: tuple[str, ...], per_class: int, seed: int = 0) -> None:
    from PIL import Image

    rng = random.Random(seed)
    for c in classes:
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = tuple(rng.randrange(256) for _ in range(3))
            Image.new("RGB", (40, 40), colour).save(root / split / c / f"{i:03d}.png")


def _data(work: Path) -> None:
    for split, n in (("train", 20), ("val", 4)):
        _images(work / "data", split, ("cat", "dog"), n)


def _bad_image(work: Path) -> None:
    (work / "data" / "train" / "cat" / "zz_bad.png").write_bytes(random.Random(1).randbytes(2048))


def _other_classes(work: Path) -> None:
    _images(work / "other", "val", ("apple", "pear", "plum"), 4)


def _checkpoint(work: Path, patsearch: list[str]) -> None:
    """A real checkpoint of a tiny network trained one step on ``data`` (for the eval and resume cases)."""
    _data(work)
    subprocess.run(patsearch + ["train", *TINY_TRAIN, "--data", "data", "--max-steps", "1", "--out", "ckrun",
                                "--cache", "none"], cwd=work, check=True, capture_output=True, timeout=TIMEOUT_S)


def _truncated_latest(work: Path, patsearch: list[str]) -> None:
    _checkpoint(work, patsearch)
    latest = work / "ckrun" / "latest.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])


SETUP = {
    "file_f": lambda w, p: (w / "f").write_text("a file, not a folder\n"),
    "tiny_arch": lambda w, p: (w / "tiny.yaml").write_text(TINY_ARCH),
    "bad_yaml": lambda w, p: (w / "bad.yaml").write_text("depths: [1, 1\nembed_dim: : 8\n"),
    "train_options_unknown": lambda w, p: (w / "opts.yaml").write_text("arch: patnet_t0\nlearning_rat: 0.1\n"),
    "profile_options_unknown": lambda w, p: (w / "opts.yaml").write_text("device: cpu\nbatchsize: 4\n"),
    "bench_options_unknown": lambda w, p: (w / "opts.yaml").write_text("device: cpu\nmodel: patnet_t0\n"),
    "junk_checkpoint": lambda w, p: (w / "junk.pt").write_bytes(random.Random(2).randbytes(4096)),
    "empty_data": lambda w, p: (w / "empty").mkdir(),
    "data": lambda w, p: _data(w),
    "bad_image": lambda w, p: _bad_image(w),
    "other_classes": lambda w, p: _other_classes(w),
    "checkpoint": _checkpoint,
    "truncated_latest": _truncated_latest,
}

_PG = f"postgresql://user:{SECRET_PIECES[0]}@{SECRET_PIECES[1]}@127.0.0.1:1/db"
CASES: tuple[Case, ...] = (
    Case("arch_unknown", ("info", "--arch", "patnet_t9")),
    Case("arch_file_missing", ("info", "--arch", "missing.yaml")),
    Case("arch_file_bad_yaml", ("info", "--arch", "bad.yaml"), setup=("bad_yaml",)),
    Case("train_arch_unknown", ("train", "--arch", "fasternet_q", "--device", "cpu")),
    Case("budget_units", ("search", "--latency-budget", "35parsecs")),
    Case("budget_negative", ("search", "--latency-budget", "-5ms")),
    Case("throughput_units", ("search", "--min-throughput", "h100=fast")),
    Case("budget_unknown_device", ("search", "--latency-budget", "tpu9=35ms")),
    Case("no_budget", ("search", "--trials", "1")),
    Case("sampler_unknown", ("search", "--latency-budget", "35ms", "--sampler", "annealing")),
    Case("proxy_resolution_not_32", ("search", "--latency-budget", "35ms", "--proxy-resolution", "50")),
    Case("rungs_decreasing", ("search", "--latency-budget", "35ms", "--rungs", "4,2")),
    Case("storage_scheme", ("search", "--latency-budget", "35ms", "--storage", "ftp://host/x.db")),
    Case("storage_password_at", ("search", "--latency-budget", "40ms", "--storage", _PG, *TINY_SEARCH[2:])),
    Case("storage_sqlite_unwritable", ("search", "--latency-budget", "35ms", "--storage", "sqlite:////proc/x.db")),
    Case("show_missing_study", ("search", "--show", "nosuchstudy")),
    Case("search_runs_dir_under_file", ("search", "--latency-budget", "35ms", "--runs-dir", "f/runs"),
         setup=("file_f",)),
    Case("data_missing", ("train", "--arch", "patnet_t0", "--device", "cpu", "--data", "nowhere")),
    Case("data_empty", ("train", "--arch", "patnet_t0", "--device", "cpu", "--data", "empty"),
         setup=("empty_data",)),
    Case("train_recipe_unknown", ("train", "--arch", "patnet_t0", "--recipe", "warp")),
    Case("train_epochs_zero", ("train", "--arch", "patnet_t0", "--epochs", "0")),
    Case("train_device_cuda", ("train", "--arch", "patnet_t0", "--device", "cuda")),
    Case("train_batch_larger_than_set", ("train", *TINY_TRAIN[:10], "--batch-size", "64", "--no-progress",
                                         "--synthetic-train", "16", "--out", "run"), setup=("tiny_arch",)),
    Case("train_options_unknown_field", ("train", "--options", "opts.yaml"), setup=("train_options_unknown",)),
    Case("train_out_under_file", ("train", "--arch", "patnet_t0", "--out", "f/run"), setup=("file_f",)),
    Case("train_resume_missing", ("train", "--arch", "patnet_t0", "--resume", "nope.pt", "--out", "run")),
    Case("train_corrupt_image_workers1", ("train", *FILES_TRAIN, "--data", "data", "--cache", "none",
                                          "--workers", "1", "--out", "run"),
         setup=("tiny_arch", "data", "bad_image")),
    Case("train_corrupt_image_workers0", ("train", *FILES_TRAIN, "--data", "data", "--cache", "none",
                                          "--workers", "0", "--out", "run"),
         setup=("tiny_arch", "data", "bad_image")),
    Case("train_truncated_latest_resume", (*("train", *TINY_TRAIN), "--data", "data", "--cache", "none",
                                           "--out", "ckrun", "--resume", "auto"),
         setup=("tiny_arch", "truncated_latest")),
    Case("eval_checkpoint_missing", ("eval", "--checkpoint", "nope.pt")),
    Case("eval_checkpoint_random_bytes", ("eval", "--checkpoint", "junk.pt"), setup=("junk_checkpoint",)),
    Case("eval_other_classes", ("eval", "--checkpoint", "ckrun/best.pt", "--data", "other", "--device", "cpu"),
         setup=("tiny_arch", "checkpoint", "other_classes")),
    Case("export_onnx_unwritable", ("export", "--arch", "patnet_t0", "--onnx", "/proc/x.onnx")),
    Case("export_checkpoint_random_bytes", ("export", "--arch", "patnet_t0", "--checkpoint", "junk.pt", "--onnx",
                                            "x.onnx"),
         setup=("junk_checkpoint",)),
    Case("profile_options_unknown_field", ("profile", "--options", "opts.yaml"),
         setup=("profile_options_unknown",)),
    Case("profile_unknown_device", ("profile", "--device", "tpu9")),
    Case("profile_gpu_on_cpu_host", ("profile", "--device", "v100")),
    Case("profile_out_unwritable", ("profile", "--device", "cpu", "--out", "/proc/x.json")),
    Case("bench_gpu_on_cpu_host", ("bench", "--device", "h100", "--models", "patnet_t0")),
    Case("bench_options_unknown_field", ("bench", "--options", "opts.yaml"), setup=("bench_options_unknown",)),
    Case("bench_out_unwritable", ("bench", "--device", "cpu", "--models", "patnet_t0", "--out", "/proc/x.md")),
    Case("bench_models_unknown", ("bench", "--device", "cpu", "--models", "patnet_t9")),
    # Not bad input: another device's shipped table predicts, with a note saying so; the search runs.
    Case("search_min_throughput_h100_on_cpu", ("search", "--min-throughput", "h100=20000fps", *TINY_SEARCH[2:],
                                               "--runs-dir", "runs"),
         expect_rc=0, max_lines=60, allowed_leftovers=("runs",)),
    Case("search_sigterm", ("search", "--latency-budget", "40ms", "--trials", "20", *TINY_SEARCH[4:],
                            "--storage", "sqlite:///s.db", "--study-name", "s", "--runs-dir", "runs"),
         expect_rc=143, max_lines=40, fault="sigterm", allowed_leftovers=("s.db*", "runs")),
    Case("train_kill9_then_resume", ("train", *TINY_TRAIN[:8], "--epochs", "3", "--batch-size", "8",
                                     "--no-progress", "--synthetic-train", "64", "--synthetic-val", "16",
                                     "--checkpoint-every", "1", "--out", "run"),
         setup=("tiny_arch",), expect_rc=0, max_lines=40, fault="kill9",
         allowed_leftovers=("run", ".proxy-data")),
)


def _snapshot(work: Path) -> set[str]:
    return {str(p.relative_to(work)) for p in work.rglob("*")}


def _top_level(paths: set[str]) -> list[str]:
    return sorted({p.split(os.sep, 1)[0] for p in paths})


def _running_trials(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    except sqlite3.Error:  # the schema is still being created
        return 0


def _wait_for(marker, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll ``marker()`` until it holds or the process ends; polling, not a timing window."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if marker():
            return True
        time.sleep(0.1)
    return False


def _run_fault(case: Case, cmd: list[str], work: Path, env: dict) -> tuple[int, str, dict]:
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    extra: dict = {}
    if case.fault == "sigterm":
        seen = _wait_for(lambda: _running_trials(work / "s.db") > 0, proc, TIMEOUT_S)
        if seen:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT_S)
        extra = {"signalled": seen, "running_after": _running_trials(work / "s.db")}
        return proc.returncode, err, extra
    if case.fault == "kill9":
        seen = _wait_for(lambda: (work / "run" / "latest.pt").exists(), proc, TIMEOUT_S)
        if seen:
            proc.kill()
        proc.communicate(timeout=TIMEOUT_S)
        resumed = subprocess.run(cmd + ["--resume", "auto"], cwd=work, env=env, capture_output=True, text=True,
                                 timeout=TIMEOUT_S)
        extra = {"signalled": seen, "killed_rc": proc.returncode}
        return resumed.returncode, resumed.stderr, extra
    raise ValueError(f"unknown fault {case.fault!r}")


def run_case(case: Case, patsearch: list[str], root: Path) -> dict:
    """Run one case in a fresh folder under ``root`` and return its row (the table's columns and details)."""
    work = Path(tempfile.mkdtemp(prefix=f"{case.name}.", dir=root))
    env = dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1")
    for step in case.setup:
        SETUP[step](work, patsearch)
    before = _snapshot(work)
    cmd = patsearch + list(case.args)
    start = time.monotonic()
    extra: dict = {}
    if case.fault:
        rc, err, extra = _run_fault(case, cmd, work, env)
    else:
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        rc, err = done.returncode, done.stderr
    seconds = time.monotonic() - start
    lines = [line for line in err.splitlines() if line.strip()]
    new = _top_level(_snapshot(work) - before)
    left = [p for p in new if not any(fnmatch.fnmatch(p, pattern) for pattern in case.allowed_leftovers)]
    leaked = any(piece in err for piece in SECRET_PIECES)
    clean = (rc == case.expect_rc and len(lines) <= case.max_lines and "Traceback" not in err and not leaked
             and not left and extra.get("running_after", 0) == 0 and extra.get("signalled", True))
    return {"case": case.name, "command": "patsearch " + shlex.join(case.args), "rc": rc,
            "stderr lines": len(lines), "first stderr line": lines[0] if lines else "",
            "last stderr line": lines[-1] if lines else "", "left behind": left,
            "kept (allowed)": sorted(set(new) - set(left)), "leaked": leaked,
            "clean": clean, "expect_rc": case.expect_rc, "seconds": round(seconds, 1), **extra}


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table with :data:`COLUMNS`."""

    def cell(row: dict, col: str) -> str:
        value = row[col]
        if col == "left behind":
            kept = row.get("kept (allowed)") or []
            value = (", ".join(value) or "nothing") + (f" (kept: {', '.join(kept)})" if kept else "")
        elif col == "clean":
            value = "yes" if value else "**no**"
        elif col == "command":
            value = f"`{value}`"
        text = str(value).replace("|", "\\|")
        return text if len(text) <= 160 else text[:157] + "..."

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(cell(r, c) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(out)


def _write_json(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patsearch", default=f"{sys.executable} -m patsearch",
                    help="The command that runs patsearch (default: this Python's -m patsearch).")
    ap.add_argument("--out", type=Path, help="Write the rows as JSON here (after every case, so a stop keeps them).")
    ap.add_argument("--cases", help="Comma-separated case names (default: all).")
    ap.add_argument("--list", action="store_true", help="List the case names and exit.")
    ap.add_argument("--keep", action="store_true", help="Keep each case's folder (printed) for inspection.")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    by_name = {c.name: c for c in CASES}
    names = args.cases.split(",") if args.cases else list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; --list shows them")
    patsearch = shlex.split(args.patsearch)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bad_input_sweep.") as tmp:
        root = Path(tmp)
        for name in names:
            row = run_case(by_name[name], patsearch, root)
            rows.append(row)
            print(f"{name}: rc {row['rc']}, {row['stderr lines']} stderr line(s), clean={row['clean']}",
                  file=sys.stderr, flush=True)
            if args.out:
                _write_json(args.out, rows)
        if args.keep:
            keep = Path(tempfile.mkdtemp(prefix="bad_input_sweep.kept."))
            os.rename(root, keep / "cases")
            os.mkdir(root)  # TemporaryDirectory removes its folder on exit
            print(f"case folders kept in {keep / 'cases'}", file=sys.stderr)
    print(markdown(rows))
    return 0 if all(r["clean"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
