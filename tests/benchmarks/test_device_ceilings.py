"""benchmarks/device_ceilings.py: the one measurement of the copy ceiling and the matmul rate every GPU benchmark
reports against; on the CPU it must still give finite, positive figures that scale with the work."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import device_ceilings  # noqa: E402


def test_copy_bandwidth_is_bytes_read_and_written_per_time(monkeypatch):
    monkeypatch.setattr(device_ceilings, "_median_ms", lambda fn, device, repeats: 2.0)
    # 8 MiB copied: 2 x 8 MiB moved in 2 ms
    assert device_ceilings.copy_bandwidth_gb_s("cpu", mib=8) == pytest.approx(2 * (8 << 20) / 2.0 / 1e6)


def test_matmul_rate_counts_two_flops_per_multiply_add(monkeypatch):
    monkeypatch.setattr(device_ceilings, "_median_ms", lambda fn, device, repeats: 4.0)
    assert device_ceilings.bf16_matmul_tflops("cpu", n=64) == pytest.approx(2 * 64 ** 3 / 4.0 / 1e9)


def test_cpu_measurements_are_finite_and_positive():
    gbs = device_ceilings.copy_bandwidth_gb_s("cpu", mib=4, repeats=3)
    tflops = device_ceilings.bf16_matmul_tflops("cpu", n=128, repeats=2)
    assert math.isfinite(gbs) and gbs > 0
    assert math.isfinite(tflops) and tflops > 0


def test_median_runs_the_function_once_more_than_repeats():
    calls = []
    device_ceilings._median_ms(lambda: calls.append(1), device_ceilings.torch.device("cpu"), repeats=5)
    assert len(calls) == 6
