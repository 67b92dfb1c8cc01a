"""The trainer's progress display (patsearch.train.progress) off a terminal: plain lines on a time interval."""
import logging

from patsearch.train.progress import TrainProgress, epoch_line, resumed_line


def test_plain_progress_prints_on_a_time_interval_without_metrics(caplog):
    caplog.set_level(logging.INFO, logger="patsearch")
    bar = TrainProgress(True, plain=True, total_steps=10, interval_s=0.0)
    bar.start_epoch("epoch 1/1 @32", 10)
    for _ in range(3):
        bar.advance(None)
    lines = caplog.messages
    assert [line.split(" (")[0] for line in lines] == [f"epoch 1/1 @32 step {i}/10" for i in (1, 2, 3)]
    caplog.clear()
    quiet = TrainProgress(True, plain=True, total_steps=10, interval_s=3600.0)
    quiet.start_epoch("e", 10)
    quiet.advance(None)
    assert caplog.messages == []


def test_a_resumed_run_counts_its_rate_from_where_it_resumed():
    bar = TrainProgress(True, plain=True, total_steps=100, interval_s=3600.0)
    bar.start_epoch("epoch 3/5 @32", 20, done=5, global_done=45)
    bar.advance(None)
    assert (bar.done, bar.start_done, bar.epoch_done) == (46, 45, 6)
    line = bar.plain_line("loss 1.0", bar.started + 1.0)  # 1 step in 1 s, 54 left
    assert line == "epoch 3/5 @32 step 6/20 (46/100 total) loss 1.0 eta 00:00:54"


def test_epoch_and_resume_lines():
    metrics = {"epoch": 2, "train_loss": 1.23456, "img_s": 99.6, "lr": 0.001}
    assert epoch_line(metrics, 5) == "epoch 2/5  train_loss 1.2346  100 img/s  lr 1.00e-03"
    evaluated = epoch_line({**metrics, "top1": 51.234, "top5": 90.0, "val_loss": 1.5}, 5)
    assert "top1 51.23  top5 90.00  val_loss 1.5000" in evaluated
    assert resumed_line("r/latest.pt", 1, 3, 5, 10) == "resumed from r/latest.pt at epoch 2/5, step 3/10"
    assert resumed_line("r/latest.pt", 5, 0, 5, 10) == "resumed from r/latest.pt: all 5 epochs are done"
