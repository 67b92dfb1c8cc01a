"""Parameter and FLOP counts of the variants and the paper's ablation rows, next to the paper's figures (markdown).

    .venv/bin/python benchmarks/counts.py
"""
from __future__ import annotations

from patsearch.arch import VARIANTS
from patsearch.counting import count_flops, count_params
from patsearch.models import create_model
from patsearch.paper import ABLATIONS, TABLE4, TABLE6


def _row(label: str, model, paper_p, paper_f) -> str:
    p, t, t6, fu = (count_params(model) / 1e6, count_flops(model, 224) / 1e9,
                    count_flops(model, 224, form="table6") / 1e9, count_flops(model, 224, form="fused") / 1e9)
    paper = "-" if paper_p is None else f"{paper_p} / {paper_f}"
    dev = "" if paper_p is None else f"{(p / paper_p - 1) * 100:+.1f}% / {(t6 / paper_f - 1) * 100:+.1f}%"
    return f"| {label} | {p:.3f} | {t:.3f} | {t6:.3f} | {fu:.3f} | {paper} | {dev} |"


def main() -> None:
    print("| network | params (M) | FLOPs trained (G) | FLOPs Table 6 form (G) | FLOPs fused (G) "
          "| paper params / FLOPs | deviation |")
    print("|---|---|---|---|---|---|---|")
    for name in VARIANTS:
        print(_row(name, create_model(name), *TABLE6[name]))
    t2 = VARIANTS["patnet_t2"]
    for label, changes, paper_p, paper_f in TABLE4:
        print(_row(f"Table 4: {label}", create_model(t2.replace(**changes)), paper_p, paper_f))
    for label, changes, paper_p, paper_f in ABLATIONS:
        print(_row(label, create_model(t2.replace(**changes)), paper_p, paper_f))


if __name__ == "__main__":
    main()
