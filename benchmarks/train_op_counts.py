"""Operator calls in one training step (forward + backward) per model: why a model with fewer FLOPs trains slower.

    OMP_NUM_THREADS=1 python benchmarks/train_op_counts.py patnet_t0 fasternet_t0 patnet_t2 fasternet_t2

Counts aten operator calls with torch.profiler on the CPU (batch 4, 64x64, channels_last); the count is a property of
the model's eager graph, so it carries over to GPUs, where each call is at least one kernel launch or allocation.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.profiler import profile  # noqa: E402

from patsearch.models import create_model  # noqa: E402


def op_calls(name: str) -> int:
    model = create_model(name, num_classes=10).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 64, 64).to(memory_format=torch.channels_last)
    model(x).sum().backward()  # warm-up
    with profile() as prof:
        model(x).sum().backward()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


if __name__ == "__main__":
    for name in sys.argv[1:] or ["patnet_t0", "fasternet_t0", "patnet_t2", "fasternet_t2"]:
        print(f"{name}: {op_calls(name)} aten calls per forward + backward", flush=True)
