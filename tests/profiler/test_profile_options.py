"""ProfileOptions: YAML round trip, one-line validation errors naming the flag, the CLI's flags over a file."""
import dataclasses
import sys

import pytest

import patsearch.profiler as profiler
from patsearch.errors import UserError
from patsearch.profiler import DeviceError, ProfileOptions, ProfileOptionsError, profile_device


def test_yaml_round_trip_gives_equal_options(tmp_path):
    opts = ProfileOptions("cpu", space="tiny", out=tmp_path / "p.json", batch=2, dtype="bfloat16",
                          channels_last=True, threads=2, form="trained", clock="wall", validate=3, calibrate=5,
                          seed=4, trace=tmp_path / "traces", fresh=True, passes=2, progress=False)
    assert opts.out == str(tmp_path / "p.json")
    path = tmp_path / "opts.yaml"
    path.write_text(opts.to_yaml())
    assert ProfileOptions.from_yaml(path) == opts
    protocol = opts.protocol()
    assert (protocol.batch, protocol.dtype, protocol.channels_last, protocol.threads, protocol.form,
            protocol.clock) == (2, "bfloat16", True, 2, "trained", "wall")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.passes = 3  # type: ignore[misc]


@pytest.mark.parametrize("changes, message", [
    ({"passes": 0}, "--passes must be at least 1, got 0"),
    ({"validate": -1}, "--validate must be a non-negative number of networks, got -1"),
    ({"calibrate": True}, "--calibrate must be a non-negative number of networks (or unset), got True"),
    ({"fresh": "yes"}, "--fresh must be true or false, got 'yes'"),
    ({"adapt_from": "epyc"}, "--adapt-from epyc needs --adapt (it names the table to adapt)"),
    ({"dtype": "float64"}, "--dtype must be one of float32, bfloat16, float16, got 'float64'"),  # the Protocol's
    ({"batch": 0}, "--batch must be a positive integer, got 0"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"cuda_graphs": "yes"}, "--cuda-graphs must be true, false or unset, got 'yes'"),
    ({"cuda_graphs": True}, "--cuda-graphs needs a GPU device; cpu is a CPU (drop the flag, or use --no-cuda-graphs)"),
    ({"tf32": 1}, "--tf32 must be true, false or unset, got 1"),
    ({"tf32": True}, "--tf32 is a GPU setting (TensorFloat-32 tensor cores); cpu is a CPU (drop the flag, or use "
                     "--no-tf32)"),
])
def test_bad_values_are_one_line_errors_naming_the_flag(changes, message):
    with pytest.raises(DeviceError) as exc:
        ProfileOptions(**{"device": "cpu", **changes})
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert isinstance(exc.value, UserError)


def test_profile_device_keywords_are_the_options():
    with pytest.raises(ProfileOptionsError, match="unexpected keyword argument 'batch_size'"):
        profile_device("cpu", batch_size=4)
    with pytest.raises(ProfileOptionsError, match="--passes must be at least 1, got 0"):
        profile_device("cpu", passes=0)


class _FakeProfile:
    provenance: dict = {}
    fidelity: dict = {}

    def summary(self) -> dict:
        return {"path": "p.json", "entries": 0, "networks": 0, "hardware": "here", "protocol": "b1"}


def test_cli_flags_given_override_the_file_and_defaults_do_not(tmp_path, monkeypatch):
    import cli

    seen = []
    monkeypatch.setattr(profiler, "build_profile", lambda opts: seen.append(opts) or _FakeProfile())
    path = tmp_path / "profile.yaml"
    path.write_text("device: cpu\nspace: tiny\nseed: 5\npasses: 3\nvalidate: 4\n")
    monkeypatch.setattr(sys, "argv", ["patsearch", "profile", "--options", str(path), "--passes", "2",
                                      "--dtype", "bfloat16"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    (opts,) = seen
    assert opts.passes == 2 and opts.dtype == "bfloat16"                         # flags given
    assert (opts.device, opts.space, opts.seed, opts.validate) == ("cpu", "tiny", 5, 4)  # file, not defaults


@pytest.mark.parametrize("argv, message", [
    (["--passes", "0", "--device", "cpu"], "error: --passes must be at least 1, got 0"),
    ([], "error: --device is required (or an --options file that sets device)"),
    (["--device", "cpu", "--cuda-graphs"], "error: --cuda-graphs needs a GPU device; cpu is a CPU (drop the flag, "
                                           "or use --no-cuda-graphs)"),
])
def test_cli_errors_are_one_line(monkeypatch, capsys, argv, message):
    import cli

    monkeypatch.setattr(sys, "argv", ["patsearch", "profile", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2 and capsys.readouterr().err.strip() == message


def test_cuda_graphs_is_part_of_the_protocol_and_names_its_own_file():
    h200 = ProfileOptions("h200").protocol()
    eager = ProfileOptions("h200", cuda_graphs=False).protocol()
    assert h200.cuda_graphs and not eager.cuda_graphs and h200 != eager
    assert h200.slug() == "b256-bfloat16-cl-graphs-fused" and eager.slug() == "b256-bfloat16-cl-fused"
    assert ProfileOptions("cuda", cuda_graphs=True).protocol().slug() == "b256-float32-nchw-graphs-fused"
    # a table written before the option existed reads as eager
    from patsearch.profiler.devices import Protocol

    stored = {k: v for k, v in eager.to_dict().items() if k != "cuda_graphs"}
    assert Protocol.from_dict(stored) == eager


def test_tf32_is_part_of_the_protocol_names_its_own_file_and_defaults_off():
    from patsearch.profiler.devices import Protocol

    strict = ProfileOptions("cuda").protocol()
    tf32 = ProfileOptions("cuda", tf32=True).protocol()
    assert not strict.tf32 and tf32.tf32 and strict != tf32
    assert strict.slug() == "b256-float32-nchw-fused" and tf32.slug() == "b256-float32-nchw-tf32-fused"
    assert ProfileOptions("h200", tf32=True).protocol().slug() == "b256-bfloat16-cl-graphs-tf32-fused"
    # a table written before the option existed reads as TF32 off, the regime its float32 matmuls ran in
    stored = {k: v for k, v in strict.to_dict().items() if k != "tf32"}
    assert Protocol.from_dict(stored) == strict


@pytest.mark.parametrize("tf32", [False, True])
def test_configure_sets_one_tf32_regime_for_convolutions_and_matmuls(tf32):
    import torch

    from patsearch.profiler.devices import get_device
    from patsearch.profiler.timing import configure

    dev = get_device("cuda")
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    # PyTorch's mixed default (convolutions TF32, matmuls not) must not survive into a GPU measurement
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
    try:
        configure(dev, dev.protocol_with(tf32=tf32))
        after = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.benchmark) = before
    assert after == (tf32, tf32)


def test_an_unwritable_out_fails_before_any_measuring(tmp_path, monkeypatch):
    import patsearch.profiler.run as run

    (tmp_path / "f").write_text("a file, not a folder")
    monkeypatch.setattr(run, "open_for_build", lambda *a, **k: pytest.fail("measured before checking --out"))
    with pytest.raises(UserError, match=r"cannot write --out .*f/p\.json: .*f is a file, not a folder"):
        profiler.build_profile(ProfileOptions("cpu", space="tiny", out=tmp_path / "f" / "p.json", progress=False))
