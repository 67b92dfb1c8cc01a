"""What a run checks and says before it starts (patsearch.train.preflight): its notes, its precision line, the
--fused-kernels note and what a CUDA-graphed step refuses; none of it needs a GPU."""
import pytest
import torch

from patsearch.errors import UserError
from patsearch.train import TrainOptions
from patsearch.train.distributed import DistContext
from patsearch.train.loop import resolve_recipe
from patsearch.train.preflight import check_cuda_graph, describe_precision, fused_kernels_note, run_notes
from patsearch.train.recipe import load_recipe

FAKE_GPU = DistContext(device=torch.device("cuda"))  # check_cuda_graph only reads the device type


def test_a_run_says_up_front_when_its_data_is_synthetic_and_its_recipe_long():
    cpu = torch.device("cpu")
    paper = resolve_recipe("patnet_t2", "patnet_t2")
    notes = run_notes(TrainOptions("patnet_t2"), paper, cpu)
    assert len(notes) == 2
    assert notes[0].startswith("note: no --data given: training on the built-in synthetic set (10000 train / "
                               "2000 val") and "pass --data DIR" in notes[0]
    assert "recipe patnet_t2 trains 300 epochs" in notes[1] and "--epochs N or --max-steps N" in notes[1]
    assert run_notes(TrainOptions("patnet_t2", data="/d", max_steps=20), paper, cpu) == []
    assert run_notes(TrainOptions("patnet_t2", data="/d"), paper, torch.device("cuda")) == []


def test_precision_text():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert describe_precision(None, True, cpu) == "float32 (amp off on CPU)"
    assert describe_precision(None, False, cpu) == "float32 (amp off)"
    assert describe_precision(torch.bfloat16, True, gpu) == "bfloat16 autocast"
    assert describe_precision(torch.float16, True, gpu) == "float16 autocast + GradScaler"


def test_cuda_graph_refuses_ddp_fp16_and_several_resolutions_and_takes_compile():
    rec = load_recipe("proxy").with_epochs(2)
    base = TrainOptions("patnet_t0", device="cuda", cuda_graph=True)
    check_cuda_graph(base, FAKE_GPU, rec, torch.bfloat16)  # the supported case passes
    check_cuda_graph(base, FAKE_GPU, rec, None)  # float32 too
    check_cuda_graph(base.replace(compile=True), FAKE_GPU, rec, torch.bfloat16)  # the compiled step is captured
    with pytest.raises(UserError, match="drop it under torchrun"):
        check_cuda_graph(base, DistContext(world_size=2, device=torch.device("cuda")), rec, torch.bfloat16)
    with pytest.raises(UserError, match="fp16's GradScaler syncs"):
        check_cuda_graph(base, FAKE_GPU, rec, torch.float16)
    with pytest.raises(UserError, match=r"one training resolution.*\(random\); pass --multi-scale none"):
        check_cuda_graph(base, FAKE_GPU, load_recipe("patnet_t0").replace(multi_scale="random"), torch.bfloat16)
    scheduled = load_recipe("patnet_t0").replace(multi_scale="schedule", multi_scale_schedule=((0, 192), (1, 224)))
    with pytest.raises(UserError, match=r"trains at several \(schedule\)"):
        check_cuda_graph(base, FAKE_GPU, scheduled.with_epochs(2), torch.bfloat16)


def test_the_run_header_says_when_fused_kernels_slow_the_step_down():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    fused = TrainOptions("patnet_t0", fused_kernels=True)
    assert "without --cuda-graph is host-bound" in fused_kernels_note(fused, gpu)
    assert "under --compile is slower" in fused_kernels_note(fused.replace(compile=True, cuda_graph=True), gpu)
    assert fused_kernels_note(fused.replace(cuda_graph=True), gpu) is None  # where they pay
    assert fused_kernels_note(fused, cpu) is None  # the reference ops: no kernels to be slow
    assert fused_kernels_note(TrainOptions("patnet_t0"), gpu) is None
