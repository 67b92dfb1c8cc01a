"""Figures published in the paper, kept in one place for reports and tests (params in millions, FLOPs in G).

Table 6: the variants at 224x224 (FLOPs counted with PAT_sp merged). Tables 3, 4, 5, 10: PATNet-T2 ablations. Table 1:
V100/MI250 throughput (batch 256) and single-core EPYC 73F3 latency, with the FasterNet peer of each variant.
"""
from __future__ import annotations

TABLE6: dict[str, tuple[float, float]] = {
    "patnet_t0": (4.3, 0.25),
    "patnet_t1": (7.8, 0.55),
    "patnet_t2": (12.6, 1.03),
    "patnet_s": (29.0, 2.71),
    "patnet_m": (61.3, 6.69),
    "patnet_l": (104.4, 11.91),
}

# Table 4 rows as configurations of PATNet-T2: (description, changes to the T2 description, params, FLOPs).
TABLE4: list[tuple[str, dict, float, float]] = [
    ("PConv + PAT_ch", {"mixers": ("pat_ch",) * 4, "spatial": ("none",) * 4}, 11.1, 0.92),
    ("+ PAT_sp", {"mixers": ("pat_ch",) * 4}, 11.5, 0.92),
    ("+ PAT_sf (= T2)", {}, 12.6, 1.03),
    ("depths 2-2-8-2", {"depths": (2, 2, 8, 2)}, 9.7, 0.98),
]

# Tables 3, 5 and 10 (and one reference row) as configurations of PATNet-T2: (description, changes, params,
# FLOPs), None where the paper has no figure.
ABLATIONS: list[tuple[str, dict, float | None, float | None]] = [
    ("Table 3: full channel attention", {"mixers": ("pat_ch_full",) * 3 + ("pat_sf",)}, 13.0, 1.04),
    ("Table 3: full spatial attention", {"spatial": ("full",) * 4}, 12.6, 1.04),
    ("Table 3: full self-attention", {"mixers": ("pat_ch",) * 3 + ("pat_sf_full",)}, 14.5, 1.12),
    ("Table 10: SRM", {"mixers": ("pat_ch_srm",) * 3 + ("pat_sf",)}, 12.2, 1.03),
    ("Table 10: SE", {"mixers": ("pat_ch_se",) * 3 + ("pat_sf",)}, 12.3, 1.04),
    ("Table 5: dense 3x3 conv", {"mixers": ("conv",) * 3 + ("pat_sf",)}, 15.8, 2.12),
    ("Table 5: DWConv (not widened)", {"mixers": ("dwconv",) * 3 + ("pat_sf",)}, 15.8, 1.28),
    ("FasterNet-style PConv, no attention", {"mixers": ("pconv",) * 4, "spatial": ("none",) * 4}, None, None),
]

# Table 1: (V100 img/s, MI250 img/s, CPU ms, top-1 %) and the FasterNet peer's name.
TABLE1: dict[str, tuple[float, float, float, float]] = {
    "patnet_t0": (7777, 11744, 12.2, 73.9),
    "patnet_t1": (4403, 7379, 21.5, 78.1),
    "patnet_t2": (3074, 4761, 35.2, 80.2),
    "patnet_s": (1559, 2422, 72.5, 82.1),
    "patnet_m": (799, 1280, 155.3, 83.1),
    "patnet_l": (426, 765, 272.5, 83.9),
    "fasternet_t0": (8546, 10612, 10.5, 71.9),
    "fasternet_t1": (4648, 7198, 22.2, 76.2),
    "fasternet_t2": (2455, 4189, 43.7, 78.9),
    "fasternet_s": (1261, 2243, 96.0, 81.3),
    "fasternet_m": (621, 1098, 181.6, 83.0),
    "fasternet_l": (384, 709, 312.5, 83.5),
}
FASTERNET_PEER = {f"patnet_{s}": f"fasternet_{s}" for s in ("t0", "t1", "t2", "s", "m", "l")}
