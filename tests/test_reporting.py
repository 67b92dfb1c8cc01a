"""The `models` tables: PATNet-T2's ablations next to the paper's figures (counting itself is tested in
tests/models; here a stand-in summary keeps the table's assembly fast)."""
from patsearch import reporting
from patsearch.arch import VARIANTS
from patsearch.paper import ABLATIONS, TABLE4


def test_ablations_table_has_every_paper_row_and_compares_at_224(monkeypatch):
    paper = {VARIANTS["patnet_t2"].replace(**c).structure_key(224): (p, f) for _, c, p, f in TABLE4 + ABLATIONS}
    seen = []

    def fake_summary(arch, resolution=224, num_classes=None):
        seen.append(arch)
        p, f = paper[arch.structure_key(224)]
        p, f = (p or 1.0) * 1.1, (f or 1.0) * 0.9  # +10% params, -10% FLOPs against the paper
        return reporting.ArchSummary(arch, resolution, int(p * 1e6), 0, int(f * 1e9), 0)

    monkeypatch.setattr(reporting, "summarize", fake_summary)
    table = reporting.ablations_table(resolution=224)
    rows = table.columns[0]._cells
    assert len(rows) == len(TABLE4) + len(ABLATIONS) == 12
    assert rows[2] == "Table 4: + PAT_sf (= T2)" and rows[-1] == "FasterNet-style PConv, no attention"
    assert len({a.structure_key(224) for a in seen}) == 12  # every row is a different network
    deviations = table.columns[6]._cells
    assert deviations[:-1] == ["+10.0% / -10.0%"] * 11 and deviations[-1] == ""  # no paper figure: no deviation
    assert set(reporting.ablations_table(resolution=64).columns[6]._cells) == {""}  # the paper's figures are at 224


def test_tables_report_progress_over_every_row(monkeypatch):
    def fake_summary(arch, resolution=224, num_classes=None):
        cfg = VARIANTS[arch] if isinstance(arch, str) else arch
        return reporting.ArchSummary(cfg, resolution, 1, 2, 3, 4)

    monkeypatch.setattr(reporting, "summarize", fake_summary)
    calls = []

    def track(items, description):
        items = list(items)
        calls.append((description, len(items)))
        yield from items

    reporting.variants_table(resolution=224, track=track)
    reporting.ablations_table(resolution=224, track=track)
    assert calls == [("counting variants", len(VARIANTS)), ("counting ablations", len(TABLE4) + len(ABLATIONS))]
