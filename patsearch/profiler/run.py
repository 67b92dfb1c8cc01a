"""`patsearch profile`: check the hardware, build or resume the lookup table, trace, validate.

:func:`build_profile` takes a :class:`~patsearch.profiler.options.ProfileOptions`; :func:`profile_device` is its
keyword front door.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

from patsearch.io import ensure_writable
from patsearch.profiler.build import LayerFactory, build_table, default_layer_factory, open_for_build
from patsearch.profiler.devices import check_hardware, get_device
from patsearch.profiler.options import ProfileOptions, ProfileOptionsError
from patsearch.profiler.table import Profile, profile_path


def profile_device(device: str, *, layer_factory: LayerFactory | None = None, model_factory: Any = None,
                   layer_budget: Any = None, network_budget: Any = None, **options: Any) -> Profile:
    """The keyword front door of :func:`build_profile`: ``device`` and ``options`` become a
    :class:`~patsearch.profiler.options.ProfileOptions` (``space``, ``out``, ``batch``, ``dtype``,
    ``channels_last``, ``threads``, ``form``, ``clock``, ``validate``, ``calibrate``, ``adapt``, ``adapt_from``,
    ``seed``, ``trace``, ``plot``, ``fresh``, ``passes``, ``progress``, ``command``)."""
    try:
        opts = ProfileOptions(device, **options)
    except TypeError as exc:  # an unknown keyword: the same one-line error as an unknown options-file field
        raise ProfileOptionsError(str(exc)) from None
    return build_profile(opts, layer_factory=layer_factory, model_factory=model_factory, layer_budget=layer_budget,
                         network_budget=network_budget)


def build_profile(options: ProfileOptions, *, layer_factory: LayerFactory | None = None, model_factory: Any = None,
                  layer_budget: Any = None, network_budget: Any = None) -> Profile:
    """Build (or resume) the lookup table of ``options.device`` for a search space, then optionally trace and
    validate.

    Only entries the table lacks are measured; ``passes`` > 1 measures every layer in that many separate passes
    (on a shared host: slow drifts of background load average out) and keeps the mean. ``validate=N`` measures
    ``calibrate`` + ``N`` random architectures end to end, fits the calibration on the first set, scores it on the
    second and writes a scatter plot (by default next to the profile, ``<profile>.fidelity.png``).

    ``adapt=True`` measures no layers: it adapts the nearest measured table (or ``adapt_from``) to this device from
    ``calibrate`` (default 14) networks measured end to end and scores it on ``validate`` (default 8) others; see
    :mod:`patsearch.profiler.adapt`. Without ``out`` profiles go to the user's folder
    (:func:`patsearch.resources.user_profiles_dir`), never into the source tree. The keywords are test hooks: what
    builds layers and networks, and the measurement budgets.
    """
    from patsearch.space import load_space

    o = options
    dev = get_device(o.device)
    protocol = o.protocol()
    check_hardware(dev)
    search_space = load_space(o.space)
    path = Path(o.out) if o.out is not None else profile_path(dev.name, protocol, space=search_space)
    if o.out is not None:  # a bad --out is one line now, not a traceback after the measuring
        ensure_writable(path, "--out", example=f"./{path.name}")
    command = o.command
    if command is None:
        command = "patsearch " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("patsearch") else \
            " ".join(sys.argv)
    if o.adapt:
        return _adapt(dev, protocol, search_space, path, validate=o.validate, calibrate=o.calibrate, seed=o.seed,
                      adapt_from=o.adapt_from, plot=o.plot, fresh=o.fresh, command=command,
                      model_factory=model_factory, network_budget=network_budget, progress=o.progress)
    from patsearch.profiler.validate import DEFAULT_CALIBRATE

    calibrate = DEFAULT_CALIBRATE if o.calibrate is None else o.calibrate
    profile = open_for_build(path, dev, protocol, fresh=o.fresh, command=command)
    layers = search_space.layer_inputs()
    source = Path(search_space.source)
    space_info = {"name": search_space.name, "file": source.name, "layers": len(layers),
                  "sha1": hashlib.sha1(source.read_bytes()).hexdigest()[:12] if source.exists() else None}
    build_table(profile, layers, dev, layer_factory=layer_factory, progress=o.progress, space_info=space_info,
                budget=layer_budget, passes=o.passes)
    if o.trace is not None:
        record_traces(profile, layers, dev, Path(o.trace), layer_factory=layer_factory)
    if o.validate:
        from patsearch.profiler.validate import validate as run_validation

        if dev.backend != "cpu":  # start the end-to-end runs without the layer pass's cached blocks and graphs
            import torch

            torch.cuda.empty_cache()

        plot_path = Path(o.plot) if o.plot is not None else path.with_suffix(".fidelity.png")
        run_validation(profile, search_space, dev, n_evaluate=o.validate, n_calibrate=calibrate, seed=o.seed,
                       model_factory=model_factory, plot=plot_path, progress=o.progress, budget=network_budget)
    return profile


def _adapt(dev: Any, protocol: Any, space: Any, path: Path, *, validate: int, calibrate: int | None, seed: int,
           adapt_from: Any, plot: Any, fresh: bool, command: str, model_factory: Any, network_budget: Any,
           progress: bool) -> Profile:
    from patsearch.profiler.adapt import N_ADAPT, N_HELD_OUT, adapt_profile, default_measure, is_adapted, nearest_base
    from patsearch.profiler.table import ProfileError, load_profile

    if path.exists() and not fresh and not is_adapted(Profile.load(path)):
        raise ProfileError(f"{path} is a measured (not adapted) table; adapting would replace it: pass "
                           f"--fresh to replace it, or --out for another file")
    base = (load_profile(adapt_from, check=False) if adapt_from is not None
            else nearest_base(dev, protocol, space, exclude=path))
    if base.backend != dev.backend or base.metric != protocol.metric:
        raise ProfileError(f"--adapt-from {base.path}: a {base.backend} {base.metric} table cannot be adapted to "
                           f"{dev.name} ({dev.backend} {protocol.metric})")

    def measure(profile: Profile, items: list, device: Any) -> None:
        default_measure(profile, items, device, model_factory=model_factory, budget=network_budget,
                        progress=progress)

    plot_path = Path(plot) if plot is not None else path.with_suffix(".fidelity.png")
    return adapt_profile(base, space, dev, protocol, path, n_adapt=calibrate or N_ADAPT,
                         n_evaluate=validate or N_HELD_OUT, seed=seed, measure=measure, command=command,
                         plot=plot_path, progress=progress)


def refit_profile(options: ProfileOptions) -> tuple[Profile, dict[str, Any], int]:
    """Measure nothing: refit the calibration and fidelity report of the profile ``options`` name (``out``, else
    the device's) from the networks it already holds, on any host (``--refit``). Returns the profile, the report
    and the number of calibration networks."""
    from patsearch.profiler.table import load_profile
    from patsearch.profiler.validate import DEFAULT_CALIBRATE, refit
    from patsearch.space import load_space

    prof = load_profile(options.out or options.device, check=False)  # other hardware is fine: nothing is timed
    plot = Path(options.plot) if options.plot is not None else prof.path.with_suffix(".fidelity.png")
    calibrate = DEFAULT_CALIBRATE if options.calibrate is None else options.calibrate
    report = refit(prof, load_space(options.space), n_evaluate=options.validate, n_calibrate=calibrate,
                   seed=options.seed, plot=plot, partial=options.partial)
    return prof, report, calibrate


def representative_layers(layers: dict[str, tuple[Any, tuple[int, int, int]]], limit: int = 8) -> list[str]:
    """A few layers worth a trace: the stem, a merge, the head and one block per mixer (median width)."""
    chosen: list[str] = []
    by_kind: dict[str, list[str]] = {}
    for key, (spec, _) in layers.items():
        kind = spec.kind if spec.kind != "block" else f"block:{spec.mixer}:{spec.spatial}"
        by_kind.setdefault(kind, []).append(key)
    for kind in sorted(by_kind):
        keys = sorted(by_kind[kind], key=lambda k: (layers[k][0].in_dim, k))
        chosen.append(keys[len(keys) // 2])
    return chosen[:limit]


def record_traces(profile: Profile, layers: dict[str, tuple[Any, tuple[int, int, int]]], device: Any,
                  trace_dir: Path, *, layer_factory: LayerFactory | None = None, limit: int = 8) -> list[Path]:
    """torch.profiler traces of representative layers, one TensorBoard run per layer (torch-tb-profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, schedule, tensorboard_trace_handler
    from torch.profiler import profile as torch_profile

    from patsearch.profiler.timing import prepare

    factory = layer_factory or default_layer_factory
    protocol = profile.protocol
    activities = [ProfilerActivity.CPU]
    if device.backend != "cpu":
        activities.append(ProfilerActivity.CUDA)
    written = []
    for key in representative_layers(layers, limit):
        spec, shape = layers[key]
        module, x = prepare(factory(spec, protocol.form), shape, device, protocol)
        run_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
        run_dir = trace_dir / run_name
        with torch.inference_mode(), torch_profile(
                activities=activities, schedule=schedule(wait=1, warmup=1, active=3),
                on_trace_ready=tensorboard_trace_handler(str(run_dir), worker_name=profile.device),
                record_shapes=True) as prof:
            for _ in range(5):
                module(x)
                if device.backend != "cpu":
                    torch.cuda.synchronize()
                prof.step()
        written.append(run_dir)
    return written
