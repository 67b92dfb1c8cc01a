"""Flag groups that several commands share, declared once: the protocol overrides (``profile``, ``bench``), the
proxy settings and the lookup tables (``search``, ``proxy-check``).

A group is a command decorator: it adds its flags to the command's signature (typer reads ``__signature__``) and
hands their values to the command as one mapping under the group's name, so each flag has one declaration and one
help text wherever it appears. The values keep the flag names; the options classes map them onto their fields.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

# Help panels of the long commands (search, proxy-check): the options grouped by what they set.
BUDGETS, PROFILES, PROXY, STUDY = "Budgets", "Space and profiles", "Proxy training", "Study"
WORKERS, RESULTS = "Where proxies train", "Results"
NETWORKS, REFERENCE, RUN = "Networks", "Reference training", "Run"


@dataclass(frozen=True)
class FlagGroup:
    """Flags (``inspect.Parameter`` objects whose annotation carries the ``typer.Option``) that a command receives
    as one mapping, keyword ``name``."""

    name: str
    params: tuple[inspect.Parameter, ...]

    def but(self, *names: str) -> FlagGroup:
        """The group without the flags ``names`` (a command that has its own, or none)."""
        return FlagGroup(self.name, tuple(p for p in self.params if p.name not in names))

    def __call__(self, command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())
        at = [p.name for p in own].index(self.name)  # the group's flags take its place in the help's order
        params = own[:at] + list(self.params) + own[at + 1:]
        names = {p.name for p in self.params}

        @functools.wraps(command)
        def with_group(**kwargs: Any) -> Any:
            group = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, **{self.name: group})

        # keyword-only: the group's flags have defaults and may follow a command's required ones
        with_group.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])
        return with_group


def flag(name: str, annotation: Any, default: Any, *decls: str, **option: Any) -> inspect.Parameter:
    """One flag of a group: parameter ``name`` of type ``annotation`` with ``typer.Option(*decls, **option)``."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(*decls, **option)])


# Where a training runs (train, eval): a torch device, not a hardware name (profile, bench) nor a table (search).
TORCH_DEVICE_HELP = "Torch device: auto (the GPU if any) | cpu | cuda | cuda:N."
TorchDevice = Annotated[str, typer.Option("--device", help=TORCH_DEVICE_HELP)]

# The device's protocol, overridden (None: the device's own); checked by profiler.devices.Protocol.
PROTOCOL = FlagGroup("protocol", (
    flag("batch", int | None, None, help="Override the device's batch size."),
    flag("dtype", str | None, None, help="Override the dtype: float32 | bfloat16 | float16."),
    flag("channels_last", bool | None, None, "--channels-last/--no-channels-last", help="Override the memory format."),
    flag("threads", int | None, None, help="Override the number of CPU threads."),
    flag("form", str | None, None, help="fused (deployment, default) | trained."),
    flag("clock", str | None, None, help="CPU devices: cpu (process CPU time, default) | wall."),
    flag("cuda_graphs", bool | None, None, "--cuda-graphs/--no-cuda-graphs",
          help="GPU devices: time CUDA graph replays (h200's default) or eager calls."),
    flag("tf32", bool | None, None, "--tf32/--no-tf32",
          help="GPU devices: float32 convolutions and matmuls on TF32 tensor cores (default: off in both, the "
               "paper's float32)."),
))

# How candidates are proxy-trained: the fields of search.proxy.ProxySettings (``data`` and ``proxy_<field>``).
PROXY_SETTINGS = FlagGroup("proxy", (
    flag("data", Path | None, None, rich_help_panel=PROXY,
          help="ImageFolder with train/ and val/ (or test/); default: the built-in synthetic set."),
    flag("proxy_epochs", int | None, None, rich_help_panel=PROXY,
          help="Default: the proxy recipe's (5 on a GPU, 4 on a CPU)."),
    flag("proxy_resolution", int | None, None, rich_help_panel=PROXY,
          help="Multiple of 32 (default: 64 on a GPU, 32 on a CPU)."),
    flag("proxy_batch_size", int | None, None, rich_help_panel=PROXY, help="Default: 512 on a GPU, 64 on a CPU."),
    flag("proxy_lr", float | None, None, rich_help_panel=PROXY,
          help="Peak lr (default: the recipe's, scaled by sqrt(batch/256) from its batch)."),
    flag("proxy_train_samples", int | None, None, rich_help_panel=PROXY,
          help="Training images (synthetic: 2000; folder: all, or a class-balanced subset)."),
    flag("proxy_val_samples", int | None, None, rich_help_panel=PROXY,
          help="Validation images (synthetic: 400; folder: all)."),
    flag("proxy_holdout", int | None, None, rich_help_panel=PROXY,
          help="Validate on N class-balanced images held out of train/ instead of val/."),
    flag("proxy_device", str, "auto", rich_help_panel=WORKERS,
          help=TORCH_DEVICE_HELP),
    flag("proxy_workers", int, 0, rich_help_panel=WORKERS, help="Loader processes per training."),
    flag("proxy_compile", bool, False, "--proxy-compile", rich_help_panel=WORKERS,
          help="torch.compile each training (long proxies only)."),
    flag("proxy_cuda_graph", bool | None, None, "--proxy-cuda-graph/--no-proxy-cuda-graph", rich_help_panel=WORKERS,
          help="Replay each step from a CUDA graph (default: on a GPU)."),
))

# Worker processes on GPUs, each training proxies of the same study or check.
GPU_WORKERS = FlagGroup("workers", (
    flag("gpus", str | None, None, rich_help_panel=WORKERS,
          help="One worker process per GPU: all | N (the first N) | 0,1 (default: none, this process)."),
    flag("workers_per_gpu", int, 1, rich_help_panel=WORKERS,
          help="With --gpus: processes per GPU (small proxies are launch-bound)."),
))

# The lookup tables the budgets are checked on. ``--profile`` names a table (a device's or a JSON file), not a
# torch device; the old spellings stay as hidden aliases so that existing scripts keep working.
TABLES = FlagGroup("tables", (
    flag("profile", str | None, None, "--profile", rich_help_panel=PROFILES,
          help="Table (device or JSON) of budgets without DEVICE= (default: this host's CPU)."),
    flag("profile_alias", str | None, None, "--device", "--device-table", hidden=True, rich_help_panel=PROFILES,
          help="Deprecated spelling of --profile."),
    flag("space", str | None, None, rich_help_panel=PROFILES,
          help="Space YAML, or a name in spaces/ (default: patnet)."),
    flag("allow_stale_profile", bool, False, rich_help_panel=PROFILES, show_default=False,
          help="Use a CPU profile measured on other hardware."),
))


def options_file(what: str, panel: str | None = None) -> Any:
    """The ``--options FILE`` flag of a command whose options class is ``what`` (e.g. "SearchOptions")."""
    return typer.Option(None, "--options", rich_help_panel=panel,
                        help=f"{what} YAML (fields named like the flags); flags given here override it.")


__all__ = ["GPU_WORKERS", "PROTOCOL", "PROXY_SETTINGS", "TABLES", "FlagGroup", "TorchDevice", "flag", "options_file"]
