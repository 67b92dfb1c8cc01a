"""pin_visible_gpu: a worker's GPU index counts among the GPUs its parent sees."""
import pytest

from patsearch.train.distributed import pin_visible_gpu


@pytest.mark.parametrize("inherited, index, expected", [
    (None, 1, "1"),           # nothing inherited: the index is the physical GPU
    ("", 0, "0"),
    ("1", 0, "1"),            # the parent sees only GPU 1: its worker 0 must stay on GPU 1
    ("3,5", 1, "5"),
    ("GPU-abc,GPU-def", "0", "GPU-abc"),  # UUIDs pass through
])
def test_index_maps_through_the_inherited_list(monkeypatch, inherited, index, expected):
    # setenv first, so that monkeypatch records the variable and restores it afterwards even when it was unset
    # (delenv of an unset variable records nothing, and pin_visible_gpu's write would leak into later tests)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    if inherited is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    assert pin_visible_gpu(index) == expected
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
