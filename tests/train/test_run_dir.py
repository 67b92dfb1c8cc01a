"""A run's folder (patsearch.train.run_dir): metrics.json written whole, a resume refused when the run differs,
and a failed run's folder removed only when no checkpoint reached it."""
import json

import pytest

from patsearch.errors import UserError
from patsearch.train import checkpoint as ckpt
from patsearch.train.run_dir import RunWriter, check_resumable, remove_unfinished


def test_metrics_are_written_by_rank_zero_only(tmp_path):
    main = RunWriter(tmp_path / "run", enabled=True, tensorboard=False)
    main.metrics({"best_top1": 12.5})
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == {"best_top1": 12.5}
    other = RunWriter(tmp_path / "other", enabled=False, tensorboard=False)
    other.metrics({"best_top1": 1.0})
    other.scalars({"train/loss": 1.0}, 1)
    assert not (tmp_path / "other").exists()


def test_a_resume_with_other_settings_is_refused_by_name(tmp_path):
    saved = {"arch": "a", "recipe": "proxy", "global_batch": 64, "seed": 0}
    check_resumable(saved, {**saved, "lr": 0.1}, tmp_path / "latest.pt")  # other keys may differ
    check_resumable({"arch": "a"}, {**saved, "epochs": 3}, tmp_path / "latest.pt")  # older files hold fewer keys
    with pytest.raises(UserError, match=r"^cannot resume from .*latest.pt: the run's settings differ \(global_batch "
                                        r"64 -> 128\); resume with the same options, or train into a new --out$"):
        check_resumable(saved, {**saved, "global_batch": 128}, tmp_path / "latest.pt")


def test_a_failed_run_removes_only_the_folders_it_made_and_no_checkpoint_reached(tmp_path):
    parent, run = tmp_path / "runs", tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "tb").mkdir()
    remove_unfinished([run, parent])
    assert list(tmp_path.iterdir()) == []
    run.mkdir(parents=True)
    (run / ckpt.LATEST).write_bytes(b"x")
    remove_unfinished([run, parent])
    assert (run / ckpt.LATEST).exists()
    (parent / "b").mkdir()
    (run / ckpt.LATEST).unlink()
    remove_unfinished([run, parent])
    assert not run.exists() and (parent / "b").is_dir()  # the parent holds another run now: kept
