"""CUDA-graphed training steps: the option's one-line errors on any host, and on a GPU the
graphed step computing what the eager step computes."""
import copy

import pytest
import torch
import torch.nn as nn
from train_helpers import TINY_ARCH, TINY_RUN

from patsearch.errors import UserError
from patsearch.proxycheck.options import settings_dict
from patsearch.search.proxy import ProxySettings
from patsearch.train import TrainOptions, train
from patsearch.train.engine import GraphedTrainStep, TrainStep, build_optimizer
from patsearch.train.recipe import load_recipe

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_graph_on_a_cpu_run_is_a_one_line_error():
    with pytest.raises(UserError, match=r"--cuda-graph needs a CUDA GPU and this run is on cpu; drop --cuda-graph"):
        train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=8, synthetic=(16, 8), cuda_graph=True)


def test_cuda_graph_option_must_be_a_bool():
    with pytest.raises(UserError, match=r"--cuda-graph must be true or false, got 'yes'"):
        TrainOptions("patnet_t0", cuda_graph="yes")


def test_graphed_step_refuses_what_it_cannot_replay():
    model = nn.Linear(4, 2)
    rec = load_recipe("proxy")
    plain = TrainStep(model, build_optimizer(model, rec, 1e-3, torch.device("cpu")), nn.CrossEntropyLoss(),
                      torch.device("cpu"))
    with pytest.raises(ValueError, match="need a CUDA device"):
        GraphedTrainStep(plain)


def test_proxy_graphs_by_default_on_gpus_only_and_the_option_does_not_change_what_is_measured():
    assert ProxySettings().cuda_graph_for("cpu") is False
    assert ProxySettings(cuda_graph=False).cuda_graph_for("cuda") is False
    assert ProxySettings(compile=True, amp=False).cuda_graph_for("cuda") is True  # a compiled step is captured whole
    assert ProxySettings(cuda_graph=True).cuda_graph_for("cpu") is True  # asked for: the trainer then refuses it
    with pytest.raises(UserError, match=r"--proxy-cuda-graph must be true or false, got 1"):
        ProxySettings(cuda_graph=1)
    # a fidelity report measured with eager steps still matches a search that graphs its steps
    assert settings_dict(ProxySettings(cuda_graph=True)) == settings_dict(ProxySettings())


# --- on a GPU ---------------------------------------------------------------------------------------------------

def _no_dropout_patnet():
    from patsearch.models import create_model

    torch.manual_seed(0)
    model = create_model(dict(TINY_ARCH, embed_dim=16), num_classes=10, drop_path_rate=0.0)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if hasattr(module, "attn_drop"):
            module.attn_drop = 0.0
    return model.cuda().to(memory_format=torch.channels_last)


@needs_cuda
def test_graphed_steps_compute_what_eager_steps_compute():
    # float64: rounding cannot explain a difference (AdamW's first steps are nearly sign(grad), which turns float32
    # rounding of a near-zero gradient into a full lr-sized step), so any gap is the graph's.
    rec = load_recipe("proxy")
    device = torch.device("cuda")
    eager_model = _no_dropout_patnet().double()
    graph_model = copy.deepcopy(eager_model)
    steps = []
    for model in (eager_model, graph_model):
        opt = build_optimizer(model, rec, 1e-3, device, capturable=True)
        steps.append((TrainStep(model, opt, nn.CrossEntropyLoss(), device, None, clip_grad=1.0), opt))
    eager, graphed = steps[0][0], GraphedTrainStep(steps[1][0], warmup=2)
    gen = torch.Generator(device="cuda").manual_seed(1)
    for i in range(8):  # 2 eager warm-up calls, the capture, 5 replays; the lr changes every step
        x = torch.randn(8, 3, 32, 32, device=device, generator=gen, dtype=torch.float64)
        x = x.to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,), device=device, generator=gen)
        for _, opt in steps:
            for group in opt.param_groups:
                # a power of two: the graph's lr lives in a float32 tensor (what the fused AdamW kernel reads),
                # so an lr float32 cannot hold exactly would differ from the eager step's float64 by design
                group["lr"] = (i + 1) / 1024
        loss_e, loss_g = eager(x, y), graphed(x, y)
        torch.testing.assert_close(loss_g, loss_e, rtol=1e-7, atol=1e-9, msg=lambda m, i=i: f"loss of step {i}: {m}")
        for (name, p_e), p_g in zip(eager_model.named_parameters(), graph_model.parameters()):
            torch.testing.assert_close(p_g, p_e, rtol=1e-7, atol=1e-9,
                                       msg=lambda m, name=name, i=i: f"{name} after step {i}: {m}")
    assert graphed.graph is not None and graphed.calls == 8
    assert all(isinstance(group["lr"], float) for group in steps[1][1].param_groups)  # checkpoints see floats
    with pytest.raises(ValueError, match="one batch shape: captured"):
        graphed(torch.randn(4, 3, 32, 32, device=device, dtype=torch.float64),
                torch.zeros(4, dtype=torch.long, device=device))


@needs_cuda
def test_graphed_proxy_training_learns_under_bf16(tmp_path):
    from test_train_fast_path import colour_folder

    data = colour_folder(tmp_path / "data")
    result = train(TINY_ARCH, **dict(TINY_RUN, device="cuda"), data=data, epochs=4, batch_size=16, lr=3e-3,
                   tensor_cache_dir=tmp_path / "cache", cuda_graph=True)
    assert result["run"]["cuda_graph"] and result["run"]["precision"] == "bfloat16 autocast"
    assert result["history"][-1]["top1"] >= 90.0, result["history"]


def test_throughput_harness_refuses_graphs_off_a_gpu():
    from patsearch.train.throughput import measure_train_throughput

    with pytest.raises(UserError, match=r"cuda_graph needs a CUDA device \(this run is on cpu\); drop it"):
        measure_train_throughput(TINY_ARCH, batch_size=2, resolution=32, steps=1, warmup=0, device="cpu",
                                 cuda_graph=True)
