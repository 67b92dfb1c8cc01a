"""`patsearch bench`: the paper's Table 1 rows (params, FLOPs, throughput or latency), measured side by side.

PATNet variants run in trained and fused (deployment) form; timm peers (FasterNet T0-L and a few of the paper's
other rows) run as built and in deployment form too (conv-BN folded with torch.fx), so the comparison is between
what each would deploy. All models are measured in one process, interleaved in small groups, under the device's
protocol; ratios between rows are the meaningful output on a shared machine.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patsearch.arch import VARIANTS
from patsearch.io import atomic_write_text, ensure_writable
from patsearch.models.forms import FORMS as FORMS_REGISTRY
from patsearch.models.forms import build_form
from patsearch.profiler.bench_options import BenchOptions, BenchOptionsError  # noqa: F401 (re-exported)
from patsearch.profiler.devices import check_hardware, environment, get_device
from patsearch.profiler.progress import MeasureProgress
from patsearch.profiler.table import _now

FASTERNET = tuple(f"fasternet_{s}" for s in ("t0", "t1", "t2", "s", "m", "l"))
# Rows of the paper's Table 1/9 that timm builds (names as timm spells them).
PEERS = ("mobilenetv2_100", "efficientnet_b0", "ghostnet_130", "mobilevit_xxs", "efficientvit_b1",
         "poolformer_s12", "resnet50", "convnext_tiny")
DEFAULT_MODELS = tuple(VARIANTS) + FASTERNET + PEERS


@dataclass
class BenchRow:
    model: str
    family: str
    form: str
    params_m: float | None
    flops_g: float | None
    value: float | None           # the protocol's metric
    spread_pct: float | None      # p10-p90 spread of the per-call time (the median over rounds)
    vs_fasternet: float | None = None   # PATNet rows: metric ratio to the same-size FasterNet, same form
    rounds_range_pct: float | None = None  # with several rounds: their values' range, % of the row's value
    note: str = ""


@dataclass
class BenchResult:
    device: str
    metric: str
    protocol: str
    resolution: int
    provenance: dict[str, Any]
    rows: list[BenchRow]

    def to_json(self) -> str:
        return json.dumps({"device": self.device, "metric": self.metric, "protocol": self.protocol,
                           "resolution": self.resolution, "provenance": self.provenance,
                           "rows": [asdict(r) for r in self.rows]}, indent=1)

    def value_column(self) -> str:
        """The metric column's name with its unit (a CSV has no other place for it)."""
        return "latency_ms" if self.metric == "latency_ms" else "throughput_img_per_s"

    def to_csv(self) -> str:
        buf = io.StringIO()
        name = self.value_column()
        fields = [name if f == "value" else f for f in BenchRow.__dataclass_fields__]
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        for row in self.rows:
            values = asdict(row)
            values[name] = values.pop("value")
            writer.writerow(values)
        return buf.getvalue()

    def to_markdown(self) -> str:
        unit = "latency (ms) lower is better" if self.metric == "latency_ms" else "throughput (img/s) higher is better"
        prov = self.provenance
        rounds = prov.get("rounds") or 1
        extra = f" range over {rounds} rounds |" if rounds > 1 else ""
        lines = [f"Device `{self.device}` ({prov.get('hardware')}), protocol `{self.protocol}`, "
                 f"{self.resolution}x{self.resolution}, torch {prov.get('torch')}, {prov.get('date')}.",
                 f"Command: `{prov.get('command')}`", "",
                 f"| model | form | params (M) | FLOPs (G) | {unit} | spread p10-p90 | vs FasterNet |{extra}",
                 "|---|---|---|---|---|---|---|" + ("---|" if extra else "")]

        def fmt(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        for r in self.rows:
            value = fmt(r.value, ".2f" if self.metric == "latency_ms" else ".0f")
            lines.append(f"| {r.model} | {r.form} | {fmt(r.params_m, '.2f')} | {fmt(r.flops_g, '.3f')} | {value}"
                         f"{' (' + r.note + ')' if r.note else ''} | {fmt(r.spread_pct, '.1f')}% | "
                         f"{fmt(r.vs_fasternet, '.2f')} |" + (f" {fmt(r.rounds_range_pct, '.1f')}% |" if extra else ""))
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        return {"md": self.to_markdown, "markdown": self.to_markdown, "csv": self.to_csv,
                "json": self.to_json}[fmt]()


def _family(name: str) -> str:
    if name.endswith((".yaml", ".yml")):
        return "arch file"
    return "patnet" if name in VARIANTS else "fasternet" if name.startswith("fasternet") else "peer"


def run_bench(device: str, *, budget: Any = None, **options: Any) -> BenchResult:
    """The keyword front door of :func:`build_bench`: ``device`` and ``options`` become a
    :class:`~patsearch.profiler.bench_options.BenchOptions` (``models``, ``forms``, ``resolution``, ``batch``,
    ``dtype``, ``channels_last``, ``threads``, ``clock``, ``group``, ``format``, ``out``, ``progress``,
    ``command``). It measures only; :func:`write_result` saves the table."""
    try:
        opts = BenchOptions(device, **options)
    except TypeError as exc:  # an unknown keyword: the same one-line error as an unknown options-file field
        raise BenchOptionsError(str(exc)) from None
    return build_bench(opts, budget=budget)


def build_bench(options: BenchOptions, *, budget: Any = None) -> BenchResult:
    """Measure params, FLOPs and the device's metric for each model in each form, side by side."""
    import sys

    import torch

    from patsearch.counting import count_flops, count_params
    from patsearch.models import create_model
    from patsearch.profiler.timing import NETWORK_BUDGET_CPU, NETWORK_BUDGET_GPU, configure, prepare

    dev = get_device(options.device)
    protocol = options.protocol()
    check_hardware(dev)
    if options.out is not None:  # a bad --out is one line now, not a traceback after the measuring
        ensure_writable(options.out, "--out", example=f"./{Path(options.out).name}")
    configure(dev, protocol)
    models = list(options.models or DEFAULT_MODELS)
    forms, resolution, group, command = options.forms, options.resolution, options.group, options.command
    budget = budget or (NETWORK_BUDGET_CPU if dev.backend == "cpu" else NETWORK_BUDGET_GPU)
    gpu = dev.backend != "cpu"

    # Build every (model, form) first (counting on CPU), then measure in interleaved groups.
    jobs: list[tuple[str, str, Any]] = []
    rows: dict[tuple[str, str], BenchRow] = {}
    for name in models:
        base = create_model(name).eval()
        for form in forms:
            note = ""
            try:
                model = build_form(base, form)
            except Exception as exc:  # noqa: BLE001 - a peer fx cannot trace is reported, not fatal
                rows[(name, form)] = BenchRow(name, _family(name), form, None, None, None, None,
                                              note=f"cannot fuse: {type(exc).__name__}")
                continue
            try:
                flops = count_flops(model, resolution) / 1e9
            except Exception as exc:  # noqa: BLE001
                flops, note = None, f"FLOPs n/a: {type(exc).__name__}"
            rows[(name, form)] = BenchRow(name, _family(name), form, round(count_params(model) / 1e6, 4),
                                          None if flops is None else round(flops, 4), None, None, note=note)
            jobs.append((name, form, model))

    with MeasureProgress(options.progress, total=len(jobs), description=f"bench {dev.name}") as advance:
        for start in range(0, len(jobs), group):
            chunk = jobs[start:start + group]
            prepared = [prepare(m, (3, resolution, resolution), dev, protocol) for _, _, m in chunk]
            rounds = [_time_chunk(prepared, gpu=gpu, budget=budget, protocol=protocol) for _ in range(options.rounds)]
            del prepared
            for i, (name, form, _) in enumerate(chunk):
                timings = [r[i] for r in rounds]
                if timings[0] is None:  # a peer that CUDA graphs cannot capture: reported, not fatal
                    rows[(name, form)].note = "cannot capture in a CUDA graph (--no-cuda-graphs times it)"
                    advance()
                    continue
                values = [t.median_ms if protocol.metric == "latency_ms" else protocol.batch * 1000.0 / t.median_ms
                          for t in timings]
                value = statistics.median(values)
                rows[(name, form)].value = round(value, 3)
                rows[(name, form)].spread_pct = round(statistics.median(t.spread for t in timings) * 100, 2)
                if len(values) > 1:
                    rows[(name, form)].rounds_range_pct = round((max(values) - min(values)) / value * 100, 2)
                advance()
            if gpu:
                torch.cuda.empty_cache()

    # Side-by-side ratio: PATNet-X vs FasterNet-X (same size tier, same form), in "better" direction (>1 = faster).
    for (name, form), row in rows.items():
        peer = rows.get((name.replace("patnet_", "fasternet_"), form)) if name in VARIANTS else None
        if peer and row.value and peer.value:
            ratio = row.value / peer.value
            row.vs_fasternet = round(1 / ratio if protocol.metric == "latency_ms" else ratio, 3)

    env = environment(dev)
    env.update(date=_now(), command=command or " ".join(sys.argv), rounds=options.rounds)
    if "fast" in forms:  # tables measured with the improved path say so
        env["fast_path"] = f"form 'fast' = {FORMS_REGISTRY['fast'].description}"
    ordered = [rows[(n, f)] for n in models for f in forms if (n, f) in rows]
    return BenchResult(dev.name, protocol.metric, protocol.slug(), resolution, env, ordered)


def _time_chunk(prepared: list, *, gpu: bool, budget: Any, protocol: Any) -> list:
    """Time a group interleaved; under CUDA graphs, a group with a network that cannot be captured is timed one
    by one instead, that network's timing being None."""
    from patsearch.profiler.timing import GraphCaptureError, time_interleaved

    try:
        return time_interleaved(prepared, gpu=gpu, budget=budget, clock=protocol.clock, graphs=protocol.cuda_graphs)
    except GraphCaptureError:
        timings = []
        for item in prepared:
            try:
                timings += time_interleaved([item], gpu=gpu, budget=budget, clock=protocol.clock, graphs=True)
            except GraphCaptureError:
                timings.append(None)
        return timings


def write_result(result: BenchResult, path: str | Path, fmt: str | None = None) -> Path:
    path = Path(path)
    fmt = fmt or {".md": "md", ".csv": "csv", ".json": "json"}.get(path.suffix, "md")
    return atomic_write_text(path, result.render(fmt))
