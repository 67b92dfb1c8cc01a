import random

import numpy as np
import torch

from patsearch.data.synthetic import SyntheticShapes
from patsearch.data.transforms import (
    DeviceNormalizer,
    TransformedDataset,
    collate_uint8,
    eval_transform,
    train_transform,
)
from patsearch.train.recipe import load_recipe


def test_augmentation_is_a_function_of_the_sample_seed():
    recipe = load_recipe("patnet_t2")  # RandAugment m5 + flip + bicubic RRC
    ds = TransformedDataset(SyntheticShapes(8, image_size=64), train_transform(recipe, 64))
    a, b, c = (np.asarray(ds[item][0]) for item in ((3, 123), (3, 123), (3, 124)))
    assert a.dtype == np.uint8 and a.shape == (3, 64, 64)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_seeded_access_leaves_the_main_process_rng_alone():
    ds = TransformedDataset(SyntheticShapes(4, image_size=32), train_transform(load_recipe("proxy"), 32))
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    ds[(1, 99)]
    assert (torch.rand(1), random.random(), np.random.rand()) == expected


def test_eval_transform_resizes_by_crop_pct_and_normalises_on_device():
    recipe = load_recipe("patnet_t0")
    tf = eval_transform(recipe, 64)
    names = [type(t).__name__ for t in tf.transforms]
    assert names[:2] == ["Resize", "CenterCrop"] and tf.transforms[0].size == int(64 / 0.9)
    ds = TransformedDataset(SyntheticShapes(4, image_size=64), tf)
    images, labels = collate_uint8([ds[i] for i in range(4)])
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 64, 64) and labels.tolist() == [0, 1, 2, 3]
    x = DeviceNormalizer(torch.device("cpu"), channels_last=True)(images)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0, 0], (images[0, 0, 0, 0].float() / 255 - 0.485) / 0.229)
