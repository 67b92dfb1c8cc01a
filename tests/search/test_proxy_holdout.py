"""--proxy-holdout: proxy validation images come out of the training split, never the val/test split."""
from pathlib import Path

import pytest

from patsearch.errors import UserError
from patsearch.search.proxy import ProxySettings, prepare_folder


def _folder(root: Path, classes=("a", "b"), train_per_class=20, val_per_class=5) -> Path:
    for split, n in (("train", train_per_class), ("test", val_per_class)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{split}{c}{i:03d}.jpg").write_bytes(b"not decoded here")
    return root


def _files(folder: Path, split: str) -> dict[str, set[str]]:
    return {c.name: {Path(p.resolve()).name for p in c.iterdir()} for c in sorted((folder / split).iterdir())}


def test_holdout_is_disjoint_from_training_balanced_and_never_the_test_split(tmp_path):
    root = _folder(tmp_path / "data")
    settings = ProxySettings(data=str(root), holdout=10, train_samples=20, subset_dir=str(tmp_path / "cache"))
    folder, num_classes = prepare_folder(settings)
    assert num_classes == 2
    train, val = _files(Path(folder), "train"), _files(Path(folder), "val")
    for c in ("a", "b"):
        assert len(val[c]) == 5 and len(train[c]) == 10  # 10 held out (5 a class), 20 trained on (10 a class)
        assert not train[c] & val[c]
        assert all(name.startswith("train") for name in val[c])  # from the training split, not test/
    assert settings.data_id() == "folder:data:20/holdout10"
    assert settings.train_images() == 20
    assert ProxySettings(data=str(root), holdout=10).train_images() == 30  # 40 minus the 10 held out
    # another holdout size is another subset, not a reuse of this one
    other, _ = prepare_folder(ProxySettings(data=str(root), holdout=4, subset_dir=str(tmp_path / "cache")))
    assert other != folder and sum(len(v) for v in _files(Path(other), "val").values()) == 4


@pytest.mark.parametrize("kw, message", [
    (dict(holdout=10), "--proxy-holdout needs --data"),
    (dict(data="x", holdout=10, val_samples=5), "--proxy-holdout replaces --proxy-val-samples"),
    (dict(data="x", holdout=0), "--proxy-holdout must be a positive integer, got 0"),
])
def test_bad_holdout_options(kw, message):
    with pytest.raises(UserError) as info:
        ProxySettings(**kw)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_holdout_larger_than_the_training_split_is_refused(tmp_path):
    root = _folder(tmp_path / "data")
    with pytest.raises(UserError, match="--proxy-holdout 40 leaves no training images"):
        prepare_folder(ProxySettings(data=str(root), holdout=40, subset_dir=str(tmp_path / "cache")))


def test_search_counts_holdout_images_for_the_standard_error(tmp_path):
    from patsearch.search.report import val_images

    root = _folder(tmp_path / "data")
    assert val_images(ProxySettings(data=str(root), holdout=10)) == 10
    assert val_images(ProxySettings(data=str(root))) == 10  # the test split: 2 x 5


@pytest.mark.parametrize("proxy,message", [
    (dict(train_samples=32, val_samples=16), r"training set \(32 images\) is smaller than one proxy batch \(64\); "
                                             r"pass --proxy-batch-size 32 or --proxy-train-samples 64"),
    (dict(train_samples=40, val_samples=16, batch_size=48), r"\(40 images\) .* \(48\); pass --proxy-batch-size 40"),
])
def test_a_training_set_smaller_than_one_batch_is_refused_before_any_study_work(tmp_path, proxy, message):
    from patsearch.search import SearchOptions, run_search

    opts = SearchOptions(latency_budgets=["35ms"], space="tiny", runs_dir=str(tmp_path / "runs"),
                         proxy=ProxySettings(epochs=1, device="cpu", **proxy))
    with pytest.raises(UserError, match=message):
        run_search(opts)
    assert not (tmp_path / "runs").exists()  # no study, no tensor cache
