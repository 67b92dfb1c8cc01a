"""A run whose validation top-1 falls most of the way back to chance says so once and records it in metrics.json;
a dip, noise and the first near-chance epochs do not count."""
import json
import logging

import pytest
from train_helpers import TINY_ARCH, TINY_RUN

from patsearch.train import train
from patsearch.train.collapse import Collapse, find_collapse


def _history(*top1s):
    return [{"epoch": i + 1, **({"top1": t} if t is not None else {})} for i, t in enumerate(top1s)]


def test_a_fall_most_of_the_way_to_chance_is_a_collapse_at_its_first_epoch():
    # the shape of PATNet-T2's runs at lr 2e-3: a fall to near chance in one epoch, then a partial recovery
    history = _history(40.0, 61.5, 72.0, 12.8, 9.9, 35.0, 60.0)
    assert find_collapse(history, 10) == Collapse(epoch=4, top1=12.8, best=72.0, best_epoch=3)


@pytest.mark.parametrize("top1s", [
    (55.0, 71.2, 68.0, 62.4, 70.0, 77.7),  # a dip of 8.8 points (clipped gradients): not halfway to chance
    (30.0, 40.0, 29.5, 45.0),              # 10.5 points down, but not halfway back to chance (25)
    (14.0, 8.0, 16.0),                      # the first epochs near chance: 6 points is noise
    (50.0, 60.0, 70.0),
    (),
])
def test_dips_noise_and_steady_runs_are_not_collapses(top1s):
    assert find_collapse(_history(*top1s), 10) is None


def test_epochs_without_an_evaluation_are_skipped_and_chance_follows_the_classes():
    assert find_collapse(_history(80.0, None, 45.0), 10) == Collapse(epoch=3, top1=45.0, best=80.0, best_epoch=1)
    assert find_collapse(_history(80.0, None, 62.0), 10) is None  # halfway back to 10% chance is 45%
    assert find_collapse(_history(80.0, None, 62.0), 2) == Collapse(epoch=3, top1=62.0, best=80.0, best_epoch=1)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        find_collapse(_history(80.0), 0)


def test_a_training_that_collapses_says_so_once_and_records_it(tmp_path, monkeypatch, caplog):
    import patsearch.train.loop as loop

    scripted = iter([60.0, 72.0, 12.8, 30.0])
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {"top1": next(scripted), "top5": 90.0, "val_loss": 1.0,
                                                         "val_samples": 16})
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="patsearch.train.progress"):
        train(TINY_ARCH, **{**TINY_RUN, "progress": "plain"}, epochs=4, batch_size=16, lr=2e-3,
              synthetic=(32, 16), out_dir=out)
    notes = [r.getMessage() for r in caplog.records if "collapsed" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith("note: validation top-1 fell from 72.0% (epoch 2) to 12.8% at "
                                                   "epoch 3: the run collapsed")
    assert "--lr (this run peaked at 0.002)" in notes[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["collapse"] == {"epoch": 3, "top1": 12.8, "best": 72.0, "best_epoch": 2}
