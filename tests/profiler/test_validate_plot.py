"""The fidelity scatter: plain, round, non-overlapping ticks on its log axes, and axis labels in words."""
import pytest
from adapt_helpers import FakeMeasure, make_base

from patsearch.profiler.adapt import adapt_profile
from patsearch.profiler.devices import get_device
from patsearch.profiler.validate import fidelity_figure, log_ticks, split_samples, tick_label


@pytest.mark.parametrize("lo, hi, ticks", [
    (25, 60, [30, 40, 50, 60]),                       # under a decade: every digit, not "3x10^1 4x10^1"
    (2000, 60000, [2000, 5000, 10000, 20000, 50000]),
    (0.01, 1000, [0.01, 0.1, 1, 10, 100, 1000]),       # many decades: one tick each
    (1e-3, 1e6, [1e-3, 1e-1, 10, 1e3, 1e5]),           # thinned to at most 7
])
def test_log_ticks_are_round_and_few(lo, hi, ticks):
    assert log_ticks(lo, hi) == pytest.approx(ticks)


def test_tick_labels_are_plain_numbers():
    assert [tick_label(v) for v in (0.5, 1.5, 30, 20000)] == ["0.5", "1.5", "30", "20,000"]


def test_fidelity_plot_labels_are_readable_and_do_not_overlap(tmp_path, tiny_space):
    import matplotlib.pyplot as plt

    base = make_base(tmp_path / "base.json", tiny_space)
    for entry in base.entries.values():   # networks of 60-100 ms: a range under one decade
        entry["ms"] *= 30
    dev = get_device("cpu")
    adapted = adapt_profile(base, tiny_space, dev, dev.protocol, tmp_path / "a.json", n_adapt=10, n_evaluate=8,
                            measure=FakeMeasure(base))
    fig = fidelity_figure(adapted, split_samples(tiny_space, 10, 8, 0))
    try:
        ax = fig.axes[0]
        assert ax.get_xlabel() == "measured latency (ms)" and ax.get_ylabel() == "predicted latency (ms)"
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
            texts = [t.get_text() for t in labels]
            assert len(texts) >= 3 and all(text.replace(",", "").replace(".", "").isdigit() for text in texts), texts
            boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: (b.x0, b.y0))
            for a, b in zip(boxes, boxes[1:]):
                assert not a.overlaps(b), texts
    finally:
        plt.close(fig)
