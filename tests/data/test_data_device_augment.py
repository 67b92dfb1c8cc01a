"""Pad-and-crop and flip on batched tensors: shapes, exact windows of the padded image, seeded determinism."""
import torch
import torch.nn.functional as F

from patsearch.data.device_augment import (
    epoch_permutation,
    pad_crop_flip,
    step_generator,
)

CPU = torch.device("cpu")


def batch(n=6, size=8):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_each_output_is_a_window_of_the_padded_image_possibly_flipped():
    x = batch()
    out = pad_crop_flip(x, 2, step_generator(CPU, 0, 0, 0), hflip=0.5)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    offsets = {(int(torch.nonzero(out[i].sum(0) > 0)[0, 0])) for i in range(len(x))}
    assert len(offsets) > 1  # not one offset for the whole batch


def test_no_padding_no_flip_is_identity_and_flip_one_mirrors():
    x = batch()
    assert torch.equal(pad_crop_flip(x, 0, step_generator(CPU, 0, 0, 0), hflip=0.0), x)
    assert torch.equal(pad_crop_flip(x, 0, step_generator(CPU, 0, 0, 0), hflip=1.0), x.flip(-1))


def test_same_step_same_augmentation_other_step_differs():
    x = batch(32, 16)
    a = pad_crop_flip(x, 2, step_generator(CPU, 5, 1, 3))
    b = pad_crop_flip(x, 2, step_generator(CPU, 5, 1, 3))
    c = pad_crop_flip(x, 2, step_generator(CPU, 5, 1, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(pad_crop_flip(x, 2, step_generator(CPU, 5, 1, 3, rank=1)), a)


def test_epoch_permutation_is_a_seeded_permutation():
    p = epoch_permutation(50, seed=0, epoch=2)
    assert sorted(p.tolist()) == list(range(50))
    assert torch.equal(p, epoch_permutation(50, seed=0, epoch=2))
    assert not torch.equal(p, epoch_permutation(50, seed=0, epoch=3))
