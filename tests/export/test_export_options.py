"""``ExportOptions`` and ``patsearch export --options``: the file is the base, flags given override it, bad fields
are one line and exit 2 with nothing written."""
import pytest

from patsearch.arch import ArchConfig
from patsearch.export import ExportOptions, ExportOptionsError, export_onnx

TINY = {"embed_dim": 8, "depths": [1, 1, 1, 1], "head_width": 32, "num_classes": 10, "name": "tiny"}


@pytest.fixture()
def options_file(tmp_path):
    arch = ArchConfig(**{**TINY, "depths": tuple(TINY["depths"])}).save(tmp_path / "tiny.yaml")
    path = tmp_path / "export.yaml"
    path.write_text(f"arch: {arch}\nonnx: {tmp_path / 'from-file.onnx'}\nresolution: 64\nopset: 17\n")
    return path


def test_an_options_file_drives_export(tmp_path, run_main, options_file):
    onnx = pytest.importorskip("onnx")
    code, out, err = run_main("export", "--options", str(options_file))
    assert code == 0, err
    written = tmp_path / "from-file.onnx"
    assert out == f"wrote {written}"
    graph = onnx.load(str(written))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]  # the file's opset
    assert graph.graph.input[0].type.tensor_type.shape.dim[2].dim_value == 64              # its resolution


def test_a_given_flag_overrides_the_file_and_defaults_do_not(tmp_path, monkeypatch, run_main, options_file):
    import patsearch.export

    seen = []
    monkeypatch.setattr(patsearch.export, "export_onnx", lambda opts: seen.append(opts) or opts.onnx)
    code, out, err = run_main("export", "--options", str(options_file), "--onnx", "flag.onnx",
                             "--num-classes", "3")
    assert code == 0, err
    (opts,) = seen
    assert (opts.onnx, opts.num_classes) == ("flag.onnx", 3)                         # flags given
    assert (opts.resolution, opts.opset, opts.checkpoint) == (64, 17, None)         # the file's, not the defaults
    assert opts.arch == str(tmp_path / "tiny.yaml")


@pytest.mark.parametrize("field, message", [
    ("opset: 11", "--opset 11 is too old; use 17 or newer"),
    ("resolution: 100", "each side must be a multiple of 32"),
    ("num_classes: 0", "--num-classes must be a positive integer or unset, got 0"),
    ("onnx: out.txt", "output out.txt should end in .onnx"),
    ("opsett: 18", "unknown field(s) opsett"),
])
def test_a_bad_field_is_one_line_exit_2_and_nothing_written(tmp_path, run_main, options_file, field,
                                                           message):
    options_file.write_text(options_file.read_text() + field + "\n")
    before = sorted(tmp_path.iterdir())
    code, out, err = run_main("export", "--options", str(options_file))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {options_file}: ") and message in err and "\n" not in err, err
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("args, message", [
    (["--onnx", "x.onnx"], "error: --arch is required (or an --options file that sets arch)"),
    (["--arch", "patnet_t0"], "error: --onnx is required (or an --options file that sets onnx)"),
])
def test_without_arch_or_onnx_is_one_line(tmp_path, monkeypatch, run_main, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main("export", *args)
    assert (code, err) == (2, message)
    assert list(tmp_path.iterdir()) == []


def test_options_and_keywords_are_one_api(tmp_path):
    opts = ExportOptions(TINY, tmp_path / "m.onnx", resolution=32)
    assert opts.onnx == str(tmp_path / "m.onnx")
    path = tmp_path / "export.yaml"
    path.write_text(opts.to_yaml())
    assert ExportOptions.from_yaml(path) == opts
    with pytest.raises(ExportOptionsError, match=r"^--opset 16 is too old"):
        export_onnx(opts, opset=16)  # keywords replace fields of the options, validated again
    assert not (tmp_path / "m.onnx").exists()
