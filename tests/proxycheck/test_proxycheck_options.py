"""FidelityOptions as the proxy-check command builds it: an options file is the base, flags given on the command
line override it, the proxy's, the reference's and the alternatives' flags fill their settings, and bad fields are
one-line errors."""
from __future__ import annotations

import pytest
import yaml
from search_helpers import options_passed

from patsearch.errors import UserError
from patsearch.proxycheck import FidelityOptions

PROXY = {"epochs": 1, "resolution": 32, "batch_size": 16, "train_samples": 64, "val_samples": 32, "device": "cpu"}


def _check_options(monkeypatch, *args: str) -> FidelityOptions:
    """The FidelityOptions `patsearch proxy-check ARGS` hands to the library (no training runs)."""
    import patsearch.proxycheck

    return options_passed(monkeypatch, patsearch.proxycheck, "run_fidelity", "proxy-check", *args)


def test_an_options_file_drives_the_check_and_given_flags_override_it(tmp_path, monkeypatch):
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump({"n": 5, "seeds": "2,3", "budget": "20ms", "runs_dir": str(tmp_path / "r"),
                                    "proxy": PROXY, "reference": {"epochs": 10}, "variants": "none",
                                    "also_proxy": ["epochs=2"]}))
    opts = _check_options(monkeypatch, "--options", str(path), "--n", "4", "--reference-resolution", "64")
    assert opts.n == 4 and opts.reference.resolution == 64  # the flags given
    assert opts.seeds == (2, 3) and opts.budget == "20ms" and opts.variants == "none"  # the file, not defaults
    assert opts.reference.epochs == 10 and opts.proxy.epochs == 1 and opts.proxy.seed == 2  # the first seed
    assert [a.epochs for a in opts.alternatives] == [2]
    assert opts.out == str(tmp_path / "r" / "proxy-check" / "proxy-fidelity.json")
    assert opts.proxy.subset_dir == str(tmp_path / "r" / ".proxy-data")


def test_flags_alone_build_the_same_options_as_the_library(tmp_path, monkeypatch):
    opts = _check_options(monkeypatch, "--n", "3", "--proxy-epochs", "1", "--proxy-resolution", "32",
                          "--proxy-batch-size", "16", "--proxy-train-samples", "64", "--proxy-val-samples", "32",
                          "--proxy-device", "cpu", "--seeds", "4,5", "--reference", "epochs=6",
                          "--device-table", "epyc", "--runs-dir", str(tmp_path))
    assert opts.proxy == FidelityOptions(proxy=dict(PROXY, seed=4, subset_dir=str(tmp_path / ".proxy-data"))).proxy
    assert opts.reference.epochs == 6 and opts.reference.resolution == 64 and opts.profile == "epyc"
    assert opts.settings()["device_table"] == "epyc"  # the stored key of earlier reports


@pytest.mark.parametrize("data, message", [
    ({"nn": 5}, "unknown field(s) nn; known fields:"),
    ({"n": 2}, "--n must be at least 3 networks"),
    ({"seeds": "0,x"}, "--seeds '0,x': give comma-separated integers"),
    ({"reference": {"epoch": 9}}, "--reference: unknown setting(s) epoch"),
    ({"reference": "epochs=2"}, "less than 5x the proxy's"),
])
def test_bad_fields_of_an_options_file_are_one_line_errors(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"proxy": PROXY, **data}))
    with pytest.raises(UserError) as info:
        FidelityOptions.from_yaml(path)
    assert message in str(info.value) and "\n" not in str(info.value)
