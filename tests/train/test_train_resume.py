"""A run killed with SIGKILL and resumed with --resume auto takes the same next steps as an uninterrupted run; one
stopped with SIGTERM ends cleanly and says how to resume."""
import signal
import subprocess
import time

import torch
from train_helpers import PYTHON, REPO, TINY_ARCH, TINY_RUN, subprocess_env, write_tiny_arch

from patsearch.train import checkpoint as ckpt
from patsearch.train import train

EPOCHS, BATCH, SYNTHETIC = 50, 16, (64, 16)  # 4 steps per epoch; long enough that the kill lands mid-run


def _start_run(tmp_path, out, *, stderr=subprocess.STDOUT) -> subprocess.Popen:
    """`patsearch train` of a tiny network in a process of its own, saving a checkpoint every step."""
    arch = write_tiny_arch(tmp_path)
    cmd = [PYTHON, "-m", "patsearch", "train", "--arch", str(arch), "--recipe", "proxy", "--device", "cpu",
           "--resolution", "32", "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--synthetic-train",
           str(SYNTHETIC[0]), "--synthetic-val", str(SYNTHETIC[1]), "--workers", "0", "--deterministic",
           "--checkpoint-every", "1", "--no-progress", "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=stderr)


def _signal_once_saved(proc: subprocess.Popen, latest, sig: int, min_step: int) -> tuple[bool, str, str]:
    """Send ``sig`` once ``latest`` holds step ``min_step`` or later (the marker: a checkpoint on disk); returns
    whether it was sent (False: the run ended first) and the process's output."""
    sent = False
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest.exists() and ckpt.load(latest)["global_step"] >= min_step:
                proc.send_signal(sig)
                sent = True
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and not sent:
            proc.kill()
        out, err = proc.communicate(timeout=60)
    return sent, out.decode(), (err or b"").decode()


def test_killed_run_resumes_exactly(tmp_path):
    out = tmp_path / "run"
    arch = write_tiny_arch(tmp_path)
    proc = _start_run(tmp_path, out)
    # mid-epoch (step 2 of epoch 2) or later
    killed_at, output, _ = _signal_once_saved(proc, out / ckpt.LATEST, signal.SIGKILL, min_step=6)
    assert killed_at, f"the run ended before it could be killed:\n{output}"
    state = ckpt.load(out / ckpt.LATEST)  # the checkpoint survived the kill intact
    resumed_from = state["global_step"]
    assert resumed_from < EPOCHS * 4

    kw = dict(TINY_RUN, epochs=EPOCHS, batch_size=BATCH, synthetic=SYNTHETIC, deterministic=True)
    resumed: dict[int, float] = {}
    train(arch, **kw, out_dir=out, resume="auto", max_steps=resumed_from + 3,
          on_step_end=lambda step, loss: resumed.__setitem__(step, loss))
    uninterrupted: dict[int, float] = {}
    train(arch, **kw, max_steps=resumed_from + 3,
          on_step_end=lambda step, loss: uninterrupted.__setitem__(step, loss))

    steps = sorted(resumed)
    assert steps == [resumed_from + 1, resumed_from + 2, resumed_from + 3]
    assert [resumed[s] for s in steps] == [uninterrupted[s] for s in steps]  # bit-exact


def test_sigterm_stops_a_run_cleanly_and_says_how_to_resume(tmp_path):
    """What a scheduler or `timeout` sends: exit 143, one line naming the checkpoint and --resume auto, no temp file
    of a checkpoint write left in the run folder, and the checkpoint loads."""
    out = tmp_path / "run"
    proc = _start_run(tmp_path, out, stderr=subprocess.PIPE)
    sent, _, err = _signal_once_saved(proc, out / ckpt.LATEST, signal.SIGTERM, min_step=1)
    assert sent, f"the run ended before it could be stopped:\n{err}"
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (f"stopped by SIGTERM: {out / ckpt.LATEST} holds the last checkpoint; "
                                            "rerun the same command with --resume auto to continue")
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert ckpt.load(out / ckpt.LATEST)["global_step"] >= 1


def test_resume_restores_optimizer_scheduler_and_sampler_position(tmp_path):
    out = tmp_path / "run"
    kw = dict(TINY_RUN, epochs=3, batch_size=16, synthetic=(64, 16))
    train(TINY_ARCH, **kw, out_dir=out, max_steps=6)  # stops at step 2 of epoch 2
    state = ckpt.load(out / ckpt.LATEST)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 6)
    assert state["optimizer"]["state"] and state["scheduler"]
    steps = []
    result = train(TINY_ARCH, **kw, out_dir=out, resume="auto", on_step_end=lambda s, loss: steps.append(s))
    assert steps == list(range(7, 13))  # only the rest of epoch 2 and epoch 3
    assert [m["epoch"] for m in result["history"]] == [1, 2, 3]
    assert torch.isfinite(torch.tensor([m["train_loss"] for m in result["history"]])).all()


def test_resume_refuses_a_different_run(tmp_path):
    import pytest

    from patsearch.errors import UserError

    out = tmp_path / "run"
    kw = dict(TINY_RUN, batch_size=16, synthetic=(64, 16))
    train(TINY_ARCH, **kw, epochs=2, out_dir=out, max_steps=2)
    with pytest.raises(UserError, match=r"cannot resume from .*latest.pt: the run's settings differ \(epochs 2 -> 3"):
        train(TINY_ARCH, **kw, epochs=3, out_dir=out, resume="auto")
