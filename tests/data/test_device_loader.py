"""The trainer's device-tensor batches (patsearch.data.device_loader): each rank's share of every global batch,
seeded by (seed, epoch, step) so that a resumed epoch and any process count see the same batches."""
import pytest
import torch

from patsearch.data.device_loader import TensorEval, tensor_batches, uses_device_data
from patsearch.data.tensor_cache import TensorSplit
from patsearch.errors import UserError
from patsearch.train.recipe import load_recipe


def test_ranks_share_each_global_batch_of_the_tensor_path():
    n = 40
    data = TensorSplit(torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.arange(n), tuple("ab"))
    rec = load_recipe("proxy").replace(resolution=32, test_resolution=32, multi_scale_sizes=[32],
                                       multi_scale_schedule=[[0, 32]])

    def labels(rank, world, first=0):
        return [y.tolist() for _, y in tensor_batches(data, rec, 3, 1, first, 4, 8, 8 // world, rank)]

    single = labels(0, 1)
    halves = zip(labels(0, 2), labels(1, 2))
    assert [a + b for a, b in halves] == single
    assert len({i for b in single for i in b}) == 32  # 4 steps x 8 distinct samples of the epoch's permutation
    assert labels(0, 1, first=2) == single[2:]        # a resumed epoch continues with the same batches


def test_device_batches_of_a_paper_recipe_are_seeded_and_shared_by_ranks():
    n = 32
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = TensorSplit(images, torch.arange(n), tuple("ab"))
    rec = load_recipe("patnet_t1").replace(resolution=64, multi_scale="none")

    def batches(rank, world, seed=3):
        return list(tensor_batches(data, rec, seed, 0, 0, 2, 8, 8 // world, rank))

    single = batches(0, 1)
    assert all(x.shape == (8, 3, 64, 64) and x.dtype == torch.uint8 for x, _ in single)
    again = batches(0, 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single, again, strict=True))
    assert not torch.equal(single[0][0], batches(0, 1, seed=4)[0][0])
    halves = list(zip(batches(0, 2), batches(1, 2), strict=True))
    assert [torch.cat([a[1], b[1]]).tolist() for a, b in halves] == [y.tolist() for _, y in single]


def test_which_runs_keep_their_data_on_the_device():
    proxy, paper = load_recipe("proxy"), load_recipe("patnet_t0")
    assert uses_device_data(proxy, "auto") and uses_device_data(proxy, "device")
    with pytest.raises(UserError, match=r"^recipe proxy crops by padding, which only the device loader does; drop "
                                        r"--data-loader files$"):
        uses_device_data(proxy, "files")
    assert not uses_device_data(paper, "auto") and not uses_device_data(paper, "files")
    assert uses_device_data(paper, "device")
    with pytest.raises(UserError, match=r"^recipe patnet_t0: "):
        uses_device_data(paper.replace(rand_augment="rand-zz"), "device")


def test_evaluation_batches_cover_the_shard_in_order():
    data = TensorSplit(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.arange(10), tuple("ab"))
    batches = [y.tolist() for _, y in TensorEval(data, [1, 3, 5, 7, 9], 2)]
    assert batches == [[1, 3], [5, 7], [9]]
