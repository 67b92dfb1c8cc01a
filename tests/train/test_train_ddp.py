"""DDP on CPUs (gloo, 2 processes via torchrun): same gradients as one process with the whole batch; the CLI runs
under torchrun with reduced metrics and rank-0-only outputs."""
import json
import socket
import subprocess

import torch
from ddp_grad_worker import GLOBAL_BATCH, one_step_gradients
from train_helpers import PYTHON, REPO, subprocess_env, write_tiny_arch

from patsearch.train.distributed import DistContext, ShardedBatchSampler, shard_indices


def torchrun() -> list[str]:
    """torchrun with 2 processes on a free local port (parallel test runs must not collide on 29500)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(port)]


def test_ranks_together_see_the_single_process_batches():
    single = list(ShardedBatchSampler(100, 8, seed=1))
    ranks = [list(ShardedBatchSampler(100, 4, rank=r, world_size=2, seed=1)) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 12  # 100 // 8, incomplete batch dropped
    for b, batch in enumerate(single):
        assert ranks[0][b] + ranks[1][b] == batch
    resumed = ShardedBatchSampler(100, 8, seed=1)
    resumed.set_epoch(0, start_batch=5)
    assert list(resumed) == single[5:] and len(resumed) == 7
    other_epoch = ShardedBatchSampler(100, 8, seed=1)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != single


def test_eval_shards_cover_every_sample_once():
    shards = [shard_indices(10, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))


def test_two_gloo_processes_give_the_single_process_gradients(tmp_path):
    out = tmp_path / "grads.pt"
    subprocess.run([*torchrun(), str(REPO / "tests" / "train" / "ddp_grad_worker.py"), str(out)], cwd=REPO,
                   env=subprocess_env() | {"PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'train'}"}, check=True,
                   capture_output=True, timeout=300)
    ddp = torch.load(out, weights_only=True)
    whole = one_step_gradients(DistContext())  # one process, the whole global batch of GLOBAL_BATCH
    assert GLOBAL_BATCH == 16 and ddp.keys() == whole.keys()
    assert any(g.abs().sum() > 0 for g in whole.values())
    for name in whole:
        torch.testing.assert_close(ddp[name], whole[name], rtol=1e-5, atol=1e-7, msg=name)


def test_cli_train_under_torchrun(tmp_path):
    arch = write_tiny_arch(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([*torchrun(), "-m", "patsearch", "train", "--arch", str(arch), "--recipe", "proxy",
                           "--device", "cpu", "--resolution", "32", "--epochs", "1", "--batch-size", "16",
                           "--synthetic-train", "64", "--synthetic-val", "24", "--workers", "0", "--no-progress",
                           "--out", str(out)], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # only rank 0 reports
    final = json.loads(summaries[0])["final"]
    assert final["val_samples"] == 24 and final["global_step"] == 4  # 64 // 16 global steps; full val set
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "latest.pt", "metrics.json", "tb"]
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["run"]["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG state for exact resume
