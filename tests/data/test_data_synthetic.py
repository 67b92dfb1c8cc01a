import numpy as np

from patsearch.data.synthetic import CLASSES, SyntheticShapes


def test_images_are_a_pure_function_of_seed_split_and_index():
    a, b = SyntheticShapes(50, image_size=48), SyntheticShapes(50, image_size=48)
    img, label = a[7]
    assert img.size == (48, 48) and img.mode == "RGB" and label == 7
    assert np.array_equal(np.asarray(img), np.asarray(b[7][0]))
    assert not np.array_equal(np.asarray(img), np.asarray(a[17][0]))  # same class, different pose/colour
    val = SyntheticShapes(50, image_size=48, split="val")
    assert not np.array_equal(np.asarray(img), np.asarray(val[7][0]))
    other_seed = SyntheticShapes(50, image_size=48, seed=1)
    assert not np.array_equal(np.asarray(img), np.asarray(other_seed[7][0]))


def test_classes_are_balanced_and_distinct():
    ds = SyntheticShapes(100, image_size=32)
    assert ds.classes == list(CLASSES) and np.bincount(ds.targets).tolist() == [10] * 10
    # class means of the foreground masks differ: the classes are not the same picture with another label
    means = [np.mean([np.asarray(ds[c + 10 * k][0]).std() for k in range(10)]) for c in range(10)]
    assert len({round(m, 1) for m in means}) > 3


def test_noise_and_pose_vary_within_a_class():
    ds = SyntheticShapes(40, image_size=32)
    pixels = np.stack([np.asarray(ds[i][0], dtype=np.float32) for i in range(0, 40, 10)])  # class 0
    assert pixels.std(axis=0).mean() > 10
