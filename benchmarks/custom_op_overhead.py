"""Host cost of one fused op against the eager ops it replaces, on tiny tensors (why ``--fused-kernels``
slows an eager training step that the host already bounds).

    PYTHONPATH=$PWD python benchmarks/custom_op_overhead.py

``patsearch::scale_channels`` (a ``torch.library`` custom op with autograd; on a CPU it runs the reference
arithmetic, so what differs from eager is the dispatch) against ``mul`` + ``addcmul``: forward without autograd,
forward recording autograd, and forward + backward. Microseconds per call, on this host.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from patsearch.kernels import ops, reference


def per_call_us(fn: Callable[[], object], calls: int = 3000, warmup: int = 200) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    gate, scale, shift = (torch.rand(*shape, requires_grad=True) for shape in ((2, 8), (8,), (8,)))

    def eager() -> torch.Tensor:
        return torch.addcmul(shift[:, None, None], x * gate[:, :, None, None], scale[:, None, None])

    def fused() -> torch.Tensor:
        return ops.scale_channels(x, gate, scale, shift)

    with torch.no_grad():
        print(f"forward, no autograd: custom op {per_call_us(fused):.1f} us, its reference function "
              f"{per_call_us(lambda: reference.scale_channels(x, gate, scale, shift)):.1f} us, eager mul + addcmul "
              f"{per_call_us(eager):.1f} us")
    print(f"forward with autograd: custom op {per_call_us(fused):.1f} us, eager {per_call_us(eager):.1f} us")
    print(f"forward + backward: custom op {per_call_us(lambda: fused().sum().backward(), 1000):.1f} us, eager "
          f"{per_call_us(lambda: eager().sum().backward(), 1000):.1f} us")


if __name__ == "__main__":
    main()
