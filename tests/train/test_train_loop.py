import json
import sys

import pytest
import torch
from train_helpers import TINY_ARCH, TINY_RUN, write_tiny_arch

from patsearch.errors import UserError
from patsearch.train import TrainingDiverged, evaluate_checkpoint, train
from patsearch.train import checkpoint as ckpt


def test_a_few_steps_reduce_the_loss_on_a_tiny_set():
    losses = []
    result = train(TINY_ARCH, **TINY_RUN, epochs=12, batch_size=16, lr=3e-3, synthetic=(32, 16),
                   on_step_end=lambda step, loss: losses.append(loss))
    assert len(losses) == 24 and result["global_step"] == 24
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1, losses
    assert [m["epoch"] for m in result["history"]] == list(range(1, 13))
    assert 0 <= result["final"]["top1"] <= 100 and result["final"]["val_samples"] == 16


def test_fused_kernels_train_as_the_plain_model_does(monkeypatch):
    """``fused_kernels=True``: the same losses step by step (same seed, same data), so the same training."""
    from patsearch import kernels

    calls = {"gated_batch_norm": 0, "spatial_gate": 0}
    for name in calls:
        def counted(*args, _op=getattr(kernels, name), _name=name, **kwargs):
            calls[_name] += 1
            return _op(*args, **kwargs)
        monkeypatch.setattr(kernels, name, counted)
    runs = []
    for fused in (False, True):
        losses: list[float] = []
        train(TINY_ARCH, **TINY_RUN, epochs=3, batch_size=16, lr=3e-3, synthetic=(32, 16), fused_kernels=fused,
              on_step_end=lambda step, loss, seen=losses: seen.append(loss))
        runs.append(losses)
    assert len(runs[0]) == 6
    assert runs[1] == pytest.approx(runs[0], rel=1e-3), runs
    assert calls["gated_batch_norm"] > 0 and calls["spatial_gate"] > 0  # the second run did take the fused ops


def test_in_process_run_writes_nothing_and_callback_can_stop_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []

    class Pruned(Exception):
        pass

    def on_epoch_end(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        train(TINY_ARCH, **TINY_RUN, epochs=5, batch_size=16, synthetic=(32, 16), on_epoch_end=on_epoch_end)
    assert [e for e, _ in seen] == [1, 2]
    assert {"train_loss", "top1", "top5", "val_loss", "img_s", "lr"} <= set(seen[0][1])
    assert list(tmp_path.iterdir()) == []


def test_run_folder_has_checkpoints_metrics_and_tensorboard(tmp_path):
    out = tmp_path / "run"
    result = train(TINY_ARCH, **{**TINY_RUN, "tensorboard": True}, epochs=2, batch_size=16, synthetic=(32, 16),
                   out_dir=out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pt", "latest.pt", "metrics.json", "tb"]
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics["history"]] == [1, 2] and metrics["best_top1"] == result["best_top1"]
    state = ckpt.load(out / "latest.pt")  # weights_only=True
    assert state["epoch"] == 2 and state["global_step"] == 4 and state["arch"]["embed_dim"] == 8
    assert state["recipe"]["name"] == "proxy" and len(state["rng"]) == 1


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import patsearch.train.loop as loop

    real = loop.build_criterion
    calls = {"n": 0}

    def poisoned(recipe, num_classes):
        criterion, mixup = real(recipe, num_classes)

        def crit(logits, target):
            calls["n"] += 1
            loss = criterion(logits, target)
            return loss * float("nan") if calls["n"] == 3 else loss  # step 3 = first step of epoch 2
        return crit, mixup

    monkeypatch.setattr(loop, "build_criterion", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged,
                       match=r"loss became NaN or infinite in epoch 1 .*last good checkpoint .*latest.pt is intact"):
        train(TINY_ARCH, **TINY_RUN, epochs=3, batch_size=16, synthetic=(32, 16), out_dir=out)
    state = ckpt.load(out / "latest.pt")
    assert state["epoch"] == 1 and state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_eval_matches_training_and_fused_model_gives_the_same_accuracy(tmp_path):
    out = tmp_path / "run"
    result = train(TINY_ARCH, **TINY_RUN, epochs=3, batch_size=16, lr=3e-3, synthetic=(64, 32), out_dir=out)
    plain = evaluate_checkpoint(out / "latest.pt", device="cpu", batch_size=16)  # stored synthetic val split
    fused = evaluate_checkpoint(out / "latest.pt", device="cpu", batch_size=16, fused=True)
    assert plain["top1"] == pytest.approx(result["final"]["top1"])
    assert plain["val_samples"] == 32
    assert (fused["top1"], fused["top5"]) == (plain["top1"], plain["top5"])
    assert fused["val_loss"] == pytest.approx(plain["val_loss"], abs=1e-4)
    # the registry's forms: "fast" is the same function again; an unknown name is refused before any work
    fast = evaluate_checkpoint(out / "latest.pt", device="cpu", batch_size=16, form="fast")
    assert (fast["top1"], fast["form"]) == (plain["top1"], "fast") and fused["form"] == "fused"
    with pytest.raises(UserError, match=r"^--form: unknown form 'folded'; choose from .*fused"):
        evaluate_checkpoint(out / "latest.pt", device="cpu", form="folded")


def run_cli(monkeypatch, capsys, *args):
    import cli

    monkeypatch.setattr(sys, "argv", ["patsearch", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code, captured.err.strip()


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "error: data path /no/such/folder does not exist"),
    (["--recipe", "patnet_xxl"], "error: unknown recipe 'patnet_xxl'"),
    (["--batch-size", "100000"], "smaller than one global batch"),
    (["--resume", "/no/ckpt.pt", "--batch-size", "16"], "error: resume checkpoint /no/ckpt.pt does not exist"),
])
def test_cli_train_bad_input(tmp_path, monkeypatch, capsys, args, message):
    arch = write_tiny_arch(tmp_path)
    code, err = run_cli(monkeypatch, capsys, "train", "--arch", str(arch), "--device", "cpu", "--no-progress",
                        "--out", str(tmp_path / "run"), "--synthetic-train", "64", "--synthetic-val", "16",
                        "--resolution", "32", *args)
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_cli_eval_missing_checkpoint(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "eval", "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2 and err.startswith("error: checkpoint") and "does not exist" in err


def test_cli_empty_data_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    arch = write_tiny_arch(tmp_path)
    code, err = run_cli(monkeypatch, capsys, "train", "--arch", str(arch), "--data", str(tmp_path / "data"),
                        "--device", "cpu")
    assert code == 2 and "has no class folders" in err


def test_profile_steps_write_a_trace_for_torch_tb_profiler(tmp_path):
    out = tmp_path / "run"
    train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=8, synthetic=(48, 8), out_dir=out, profile_steps=2)
    traces = list((out / "profile").glob("*.pt.trace.json*"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000


def test_export_accepts_a_trained_checkpoint(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from patsearch.export import export_onnx
    from patsearch.models import create_model, fuse_model

    out = tmp_path / "run"
    arch = write_tiny_arch(tmp_path)
    train(arch, **TINY_RUN, epochs=1, batch_size=16, lr=3e-3, synthetic=(32, 16), out_dir=out)
    onnx_path = export_onnx(arch, tmp_path / "tiny.onnx", checkpoint=out / "best.pt", resolution=32, num_classes=10)
    model = create_model(arch, num_classes=10)
    ckpt.load_model_weights(model, out / "best.pt")
    x = torch.randn(2, 3, 32, 32)
    expected = fuse_model(model)(x).detach().numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(expected, fuse_model(create_model(arch, num_classes=10))(x).detach().numpy(), atol=1e-3)


def test_a_short_run_writes_best_and_metrics_for_eval(tmp_path):
    """README: `train ... --max-steps 20`, then `eval --checkpoint runs/<name>/best.pt`."""
    out = tmp_path / "run"
    result = train(TINY_ARCH, **TINY_RUN, epochs=2, batch_size=8, synthetic=(32, 16), out_dir=out, max_steps=1)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "latest.pt", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"] == [] and metrics["partial"]["global_step"] == 1
    assert metrics["best_top1"] == result["best_top1"] == metrics["partial"]["top1"]
    again = evaluate_checkpoint(out / "best.pt", device="cpu", batch_size=16)
    assert again["top1"] == pytest.approx(result["final"]["top1"]) and again["val_samples"] == 16


def test_resume_says_where_it_continues(tmp_path, caplog):
    # The run's header lines are log records (the CLI shows them on stderr), not prints.
    out = tmp_path / "run"
    run = {**TINY_RUN, "progress": True}
    with caplog.at_level("INFO", logger="patsearch"):
        train(TINY_ARCH, **run, epochs=2, batch_size=8, synthetic=(32, 16), out_dir=out, max_steps=1, resume="auto")
    logged = "\n".join(caplog.messages)
    assert "resumed from" not in logged and f"no {out / 'latest.pt'} yet, starting from the beginning" in logged
    caplog.clear()
    with caplog.at_level("INFO", logger="patsearch"):
        train(TINY_ARCH, **run, epochs=2, batch_size=8, synthetic=(32, 16), out_dir=out, max_steps=2, resume="auto")
    assert f"resumed from {out / 'latest.pt'} at epoch 1/2, step 1/4" in "\n".join(caplog.messages)


def test_a_run_of_its_own_says_its_notes_and_a_search_proxy_does_not(tmp_path, caplog):
    with caplog.at_level("INFO", logger="patsearch.train"):  # notes are INFO: --quiet hides them
        train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16))  # in-process (search proxy)
        assert not [m for m in caplog.messages if m.startswith("note:")]
        train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16), out_dir=tmp_path / "run")
    assert [m.split(":")[0] for m in caplog.messages] == ["note"] and "synthetic" in caplog.messages[0]
