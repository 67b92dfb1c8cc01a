"""SearchOptions as the search command builds it: an options file is the base, flags given on the command line
override it, the proxy's flags fill its settings, and bad fields are one-line errors."""
from __future__ import annotations

import pytest
import yaml
from search_helpers import options_passed

from patsearch.errors import UserError
from patsearch.search import SearchOptions
from patsearch.search.rungs import Rungs


def _search_options(monkeypatch, *args: str) -> SearchOptions:
    """The SearchOptions `patsearch search ARGS` hands to the library (the search itself is not run)."""
    import patsearch.search

    return options_passed(monkeypatch, patsearch.search, "run_search", "search", *args)


def test_an_options_file_drives_the_search_and_given_flags_override_it(tmp_path, monkeypatch):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({
        "latency_budgets": ["35ms"], "trials": 5, "seed": 3, "sampler": "random", "profile": "epyc",
        "runs_dir": str(tmp_path / "studies"), "proxy": {"epochs": 2, "device": "cpu", "train_samples": 64}}))
    opts = _search_options(monkeypatch, "--options", str(path), "--trials", "7", "--proxy-resolution", "64")
    assert opts.trials == 7 and opts.proxy.resolution == 64  # the flags given
    assert opts.seed == 3 and opts.sampler == "random" and opts.profile == "epyc"  # the file, not flag defaults
    assert opts.latency_budgets == ("35ms",)
    assert (opts.proxy.epochs, opts.proxy.device, opts.proxy.train_samples) == (2, "cpu", 64)
    assert opts.proxy.seed == 3  # the search's seed trains the proxies too
    assert opts.proxy.subset_dir == str(tmp_path / "studies" / ".proxy-data")


def test_the_file_may_name_fields_like_the_flags(tmp_path, monkeypatch):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"latency-budget": ["20ms"], "proxy_epochs": 3, "proxy_device": "cpu",
                                    "data": None, "seed": 1}))
    opts = _search_options(monkeypatch, "--options", str(path), "--seed", "4")
    assert opts.latency_budgets == ("20ms",) and opts.proxy.epochs == 3 and opts.proxy.device == "cpu"
    assert opts.seed == 4 and opts.proxy.seed == 4


def test_flags_alone_and_the_old_profile_spelling(monkeypatch, caplog):
    opts = _search_options(monkeypatch, "--latency-budget", "35ms", "--device", "epyc", "--proxy-device", "cpu",
                           "--proxy-epochs", "2", "--seed", "5")
    assert opts.profile == "epyc" and opts.proxy.epochs == 2 and opts.proxy.seed == 5
    assert "--device is deprecated: it is spelled --profile now" in caplog.text
    with pytest.raises(UserError, match="--device is the old spelling of --profile; give --profile only"):
        SearchOptions.from_flags({"profile": "cpu", "profile_alias": "epyc"})


@pytest.mark.parametrize("data, message", [
    ({"trails": 5}, "unknown field(s) trails; known fields:"),
    ({"trials": 0}, "--trials must be at least 1"),
    ({"proxy": {"epoch": 2}}, "proxy: unknown field(s) epoch"),
    ({"proxy": {"epochs": 0}}, "--proxy-epochs must be a positive integer"),
    ({"rung_keep": 2}, "--rung-keep must be a fraction between 0 and 1"),
    ({"proxy": "fast"}, "proxy: expected a mapping of proxy settings fields, got str"),
])
def test_bad_fields_of_an_options_file_are_one_line_errors(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        SearchOptions.from_yaml(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_rung_seeds_and_keep_are_checked_in_one_place():
    for bad in (dict(rung_seeds=0), dict(rung_seeds=True), dict(rung_keep=1.0)):
        with pytest.raises(UserError) as made:
            SearchOptions(**bad)
        with pytest.raises(UserError) as ruled:
            Rungs((2, 4), top_seeds=bad.get("rung_seeds", 2), keep=bad.get("rung_keep", 1 / 3))
        assert str(made.value) == str(ruled.value)


def test_the_proxy_device_is_resolved_once_and_passed_on_as_a_device(monkeypatch):
    """make_proxy_runner hands the device it was given to the trainer as that very object, and TrainOptions keeps
    it a device (no name in between)."""
    import torch

    import patsearch.train
    from patsearch.arch import ArchConfig
    from patsearch.search.proxy import ProxySettings, make_proxy_runner
    from patsearch.train import TrainOptions

    device = torch.device("cpu")
    seen = {}

    def fake_train(arch, recipe, **kw):
        seen.update(kw)
        return {"final": {"top1": 50.0}, "history": []}

    monkeypatch.setattr(patsearch.train, "train", fake_train)
    monkeypatch.setattr(ProxySettings, "torch_device", lambda self: pytest.fail("resolved a second time"))
    run = make_proxy_runner(ProxySettings(device="cpu"), device=device)
    assert run(ArchConfig.from_dict(_tiny_arch())) == 0.5
    assert seen["device"] is device and run.device is device
    opts = TrainOptions(arch="patnet_t0", device=device)
    assert opts.device is device and opts.to_dict()["device"] == "cpu"


def _tiny_arch() -> dict:
    import numpy as np

    from patsearch.space import load_space

    return load_space("tiny").sample(np.random.default_rng(0)).arch.to_dict()


def test_the_search_resolves_its_proxy_device_once(monkeypatch):
    import torch

    from patsearch.search.proxy import ProxySettings

    calls = []
    monkeypatch.setattr(ProxySettings, "torch_device", lambda self: calls.append(self.device) or torch.device("cpu"))
    opts = SearchOptions(proxy=ProxySettings(device="cpu", recipe="proxy_cpu"))
    assert opts.proxy_device is opts.proxy_device and opts.proxy_device == torch.device("cpu")
    assert calls == ["cpu"]
