"""Pad-and-crop and flip on batched tensors: shapes, exact windows of the padded image, seeded determinism."""
import pytest
import torch
import torch.nn.functional as F

from patsearch.data.device_augment import (
    epoch_permutation,
    pad_crop_flip,
    parse_rand_augment,
    rand_augment,
    random_resized_boxes,
    resized_crop_flip,
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


# --- the paper recipes' crop, flip and RandAugment on the device ---------------------------------------------
def test_random_resized_boxes_fit_and_follow_the_scale_and_ratio_ranges():
    boxes = random_resized_boxes(4000, 48, 40, step_generator(CPU, 0, 0, 0))
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 40).all() and (y0 + h <= 48).all()
    assert (w >= 1).all() and (h >= 1).all()
    area = w * h / (48 * 40)
    assert area.min() >= 0.06 and area.max() <= 1.0  # 0.08-1 before rounding to whole pixels
    assert 0.2 < area.mean() < 0.7
    aspect = w / h
    assert ((aspect > 0.5) & (aspect < 2.0)).all()
    assert len({(float(a), float(b)) for a, b in zip(x0[:50], y0[:50], strict=True)}) > 25  # positions vary
    assert torch.equal(boxes, random_resized_boxes(4000, 48, 40, step_generator(CPU, 0, 0, 0)))  # seeded
    assert not torch.equal(boxes, random_resized_boxes(4000, 48, 40, step_generator(CPU, 0, 0, 1)))


def test_random_resized_boxes_fall_back_to_the_centre_crop():
    # scale above what fits: no draw fits, so the centre crop at the nearest allowed ratio (torchvision's rule)
    boxes = random_resized_boxes(3, 20, 80, step_generator(CPU, 0, 0, 0), scale=(2.0, 3.0))
    assert boxes.tolist() == [[26.0, 0.0, 27.0, 20.0]] * 3  # width round(20 * 4/3) = 27, centred in 80


def test_resized_crop_flip_samples_the_box():
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    full = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 3)
    assert torch.equal(resized_crop_flip(x, full, 32), x)  # pixel centres land on pixel centres
    flips = torch.tensor([True, False, True])
    expected = torch.where(flips[:, None, None, None], x.flip(-1), x)
    assert torch.equal(resized_crop_flip(x, full, 32, flips), expected)
    square = torch.tensor([[4.0, 6.0, 16.0, 16.0]] * 3)
    assert torch.equal(resized_crop_flip(x, square, 16), x[..., 6:22, 4:20])
    up = resized_crop_flip(x, full, 64)
    ref = F.interpolate(x.float(), size=(64, 64), mode="bicubic", align_corners=False).round().clamp(0, 255)
    assert (up.float() - ref).abs().max() <= 1  # bicubic upsampling, as F.interpolate does it
    assert (resized_crop_flip(x, full, 64, mode="bilinear").float()
            - F.interpolate(x.float(), size=(64, 64), mode="bilinear", align_corners=False).round()).abs().max() <= 1


def test_rand_augment_is_seeded_and_leaves_the_callers_streams_alone():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = rand_augment(x, "rand-m9-mstd0.5-inc1", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, rand_augment(x, "rand-m9-mstd0.5-inc1", seed=7))
    assert not torch.equal(a, rand_augment(x, "rand-m9-mstd0.5-inc1", seed=8))
    assert not torch.equal(a, x)


@pytest.mark.parametrize("spec, expected", [("rand-m9-mstd0.5-inc1", (2, 9)), ("rand-m3-n3", (3, 3)),
                                            ("rand", (2, 9))])
def test_rand_augment_strings(spec, expected):
    assert parse_rand_augment(spec) == expected


@pytest.mark.parametrize("spec", ["augmix-m5", "original", "rand-m9x", ""])
def test_other_augmentations_are_refused_with_the_way_out(spec):
    with pytest.raises(ValueError, match=r"use --data-loader files for other augmentations$"):
        parse_rand_augment(spec)
