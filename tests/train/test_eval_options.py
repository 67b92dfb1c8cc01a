"""``EvalOptions`` and ``patsearch eval --options``: the file is the base, flags given override it, bad fields are
one line and exit 2."""
import json

import pytest
from train_helpers import TINY_ARCH, TINY_RUN

from patsearch.train import EvalOptions, EvalOptionsError, evaluate_checkpoint, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 24), out_dir=out)
    return out / "latest.pt"


def test_an_options_file_drives_eval_and_a_given_flag_overrides_it(tmp_path, run_main, checkpoint):
    path = tmp_path / "eval.yaml"
    path.write_text(f"checkpoint: {checkpoint}\ndevice: cpu\nform: fused\nbatch_size: 8\nresolution: 64\n")
    code, out, err = run_main("eval", "--options", str(path))
    assert code == 0, err
    from_file = json.loads(out.splitlines()[-1])
    assert (from_file["form"], from_file["resolution"], from_file["val_samples"]) == ("fused", 64, 24)
    code, out, err = run_main("eval", "--options", str(path), "--resolution", "32", "--form", "fast")
    assert code == 0, err
    overridden = json.loads(out.splitlines()[-1])
    assert (overridden["form"], overridden["resolution"]) == ("fast", 32)   # flags given win
    assert overridden["checkpoint"] == str(checkpoint)                     # the file's, not a default
    # the same evaluation from Python, through the same options
    again = evaluate_checkpoint(EvalOptions(str(checkpoint), device="cpu", form="fast", resolution=32, batch_size=8))
    assert again["top1"] == overridden["top1"] and again["val_loss"] == pytest.approx(overridden["val_loss"])


def test_cli_defaults_do_not_override_the_file(tmp_path, monkeypatch, run_main):
    seen = []
    import patsearch.train

    monkeypatch.setattr(patsearch.train, "evaluate_checkpoint", lambda opts: seen.append(opts) or {})
    path = tmp_path / "eval.yaml"
    path.write_text("checkpoint: a.pt\nbatch_size: 8\nworkers: 2\nfused: true\n")
    code, _, err = run_main("eval", "--options", str(path), "--workers", "1")
    assert code == 0, err
    assert seen == [EvalOptions("a.pt", batch_size=8, workers=1, fused=True)]
    assert seen[0].form == "fused" and seen[0].device == "auto"


@pytest.mark.parametrize("text, message", [
    ("checkpoint: a.pt\nbatch_size: 0\n", "--batch-size must be a positive integer, got 0"),
    ("checkpoint: a.pt\nform: folded\n", "--form: unknown form 'folded'; choose from"),
    ("checkpoint: a.pt\nfused: true\nform: fast\n", "--fused is --form fused; give one of them"),
    ("checkpoint: a.pt\nbatchsize: 8\n", "unknown field(s) batchsize"),
    ("checkpoint: a.pt\nresolution: 100\n", "--resolution must be a multiple of 32"),
])
def test_a_bad_field_is_one_line_and_exit_2(tmp_path, run_main, text, message):
    path = tmp_path / "eval.yaml"
    path.write_text(text)
    code, out, err = run_main("eval", "--options", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: ") and message in err and "\n" not in err, err


def test_without_checkpoint_or_options_is_one_line(run_main):
    code, _, err = run_main("eval", "--device", "cpu")
    assert (code, err) == (2, "error: --checkpoint is required (or an --options file that sets checkpoint)")


def test_options_round_trip_through_yaml(tmp_path):
    opts = EvalOptions(tmp_path / "best.pt", arch="patnet_t0", data=tmp_path, workers=0, form="fast")
    assert opts.checkpoint == str(tmp_path / "best.pt") and opts.data == str(tmp_path)
    path = tmp_path / "eval.yaml"
    path.write_text(opts.to_yaml())
    assert EvalOptions.from_yaml(path) == opts
    with pytest.raises(EvalOptionsError, match=r"^--workers must be a non-negative integer or unset, got -1$"):
        opts.replace(workers=-1)
