"""A search's winners as files (patsearch.search.best_yaml): best.yaml loads as an architecture and says how it
was found, front.yaml lists the front, and a bench measurement joins best.yaml without touching other files."""
from __future__ import annotations

from types import SimpleNamespace

import yaml

from patsearch.arch import VARIANTS, ArchConfig
from patsearch.search.best_yaml import record_measured, write_best_yaml, write_front_yaml, write_ranked_yaml
from patsearch.search.results import ConstraintInfo, Row


def _row(number, top1, **kw):
    arch = VARIANTS["patnet_t0"].replace(name="").to_dict()
    return Row(number, "COMPLETE", None, top1, {"cpu:latency_ms": 3.21234}, True, 1000, 2000, arch, 64, **kw)


def test_best_yaml_is_an_architecture_with_how_it_was_found(tmp_path):
    row = _row(7, 0.612345, seed_scores=(0.6, 0.62))
    path = write_best_yaml(tmp_path / "best.yaml", row, study_name="s",
                           constraints=[ConstraintInfo("cpu", "latency", 5.0)])
    assert ArchConfig.load(path).name == "s-trial7"  # `patsearch train --arch best.yaml` reads it
    search = yaml.safe_load(path.read_text())["search"]
    assert search["trial"] == 7 and search["proxy_top1"] == 0.6123 and search["resolution"] == 64
    assert search["proxy_seed_scores"] == [0.6123, 0.6, 0.62] and search["proxy_mean_top1"] == 0.6108
    assert search["predicted"] == {"cpu:latency_ms": 3.2123} and search["constraints"] == ["cpu latency <= 5 ms"]
    assert "rung_scores" not in search
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]  # written whole: no temp file left


def test_front_yaml_lists_the_front_in_order(tmp_path):
    path = write_front_yaml(tmp_path / "front.yaml", [_row(1, 0.5), _row(4, 0.6)], study_name="s")
    doc = yaml.safe_load(path.read_text())
    assert doc["study"] == "s" and [(e["trial"], e["proxy_top1"]) for e in doc["front"]] == [(1, 0.5), (4, 0.6)]


def test_a_bench_measurement_joins_best_yaml_and_leaves_plain_architectures_alone(tmp_path):
    best = write_best_yaml(tmp_path / "best.yaml", _row(7, 0.6), study_name="s", constraints=[])
    result = SimpleNamespace(metric="latency_ms", resolution=64, device="cpu", protocol="cpu-b1",
                             provenance={"hardware": "some cpu", "date": "d"},
                             rows=[SimpleNamespace(form="fused", value=3.14159),
                                   SimpleNamespace(form="fast", value=None)])
    entry = record_measured(best, result)
    assert entry == {"metric": "latency_ms", "resolution": 64, "hardware": "some cpu", "date": "d", "fused": 3.142,
                     "fast": None}
    assert yaml.safe_load(best.read_text())["search"]["measured"] == {"cpu (cpu-b1)": entry}
    plain = tmp_path / "arch.yaml"
    plain.write_text(yaml.safe_dump(VARIANTS["patnet_t0"].to_dict()))
    before = plain.read_bytes()
    assert record_measured(plain, result) is None and plain.read_bytes() == before


def test_ranked_yaml_holds_the_best_few_in_order_and_drops_ranks_no_longer_held(tmp_path):
    rows = [_row(7, 0.7), _row(3, 0.65), _row(9, 0.6), _row(1, 0.5)]
    paths = write_ranked_yaml(tmp_path, rows, study_name="s", constraints=[], top=3)
    assert [p.name for p in paths] == ["rank1.yaml", "rank2.yaml", "rank3.yaml"]
    assert [yaml.safe_load(p.read_text())["search"]["trial"] for p in paths] == [7, 3, 9]
    assert ArchConfig.load(paths[1]).name == "s-trial3"  # each one trains as it is: `patsearch train --arch`
    write_ranked_yaml(tmp_path, rows[:1], study_name="s", constraints=[], top=3)
    assert sorted(p.name for p in (tmp_path / "ranked").iterdir()) == ["rank1.yaml"]
