"""Inference preparation for any network, PATNet or peer: dtype, channels-last, ``torch.compile``, CUDA graphs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from patsearch.models.common import dense_format
from patsearch.models.forms import accelerate
from patsearch.models.patnet import PATNet

__all__ = ["prepare_inference"]


class _CudaGraphRunner:
    """Replays one captured forward on a static input buffer (inputs must keep shape, dtype and layout)."""

    def __init__(self, model: Callable[[torch.Tensor], Any], example: torch.Tensor, warmup: int = 3) -> None:
        self.static_in = example.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(warmup):
                model(self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = model(self.static_in)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.data_ptr() != self.static_in.data_ptr():
            self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


def prepare_inference(model: nn.Module, example: torch.Tensor, *, fast_path: bool = False,
                      compile_mode: str | None = None, cuda_graph: bool = False
                      ) -> tuple[Callable[[torch.Tensor], Any], torch.Tensor]:
    """Turn a deployment-form model into the callable a benchmark times, plus the input to time it on.

    ``example`` already has the device, dtype and memory format wanted (the model is moved to match).
    ``fast_path`` applies :func:`~patsearch.models.forms.accelerate` (PATNet only; ignored for other
    networks). ``compile_mode``: None (eager) or a ``torch.compile`` mode ("default",
    "max-autotune-no-cudagraphs", "reduce-overhead", ...). ``cuda_graph`` captures the (possibly compiled)
    forward in a CUDA graph (GPU only).
    """
    if cuda_graph and not example.is_cuda:
        raise ValueError("cuda_graph=True needs a CUDA input; run on a GPU or leave CUDA graphs off")
    if fast_path and isinstance(model, PATNet):
        model = accelerate(model)
    model = model.eval().to(device=example.device, dtype=example.dtype)
    if dense_format(example) == torch.channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn: Callable[[torch.Tensor], Any] = model
    if compile_mode is not None:
        with torch.inference_mode():  # fill the position-bias caches eagerly, so Dynamo reads them as constants
            model(example)
        fn = torch.compile(model, mode=None if compile_mode == "default" else compile_mode, dynamic=False,
                           fullgraph=False)
    if cuda_graph:
        fn = _CudaGraphRunner(fn, example)
    return fn, example
