"""Test helpers shared by the profiler tests (a module of its own: `conftest` names collide across folders)."""
import torch.nn as nn

from patsearch.profiler.timing import Budget

QUICK = Budget(warmup_s=0.0, min_samples=2, target_s=0.0, max_samples=2)


class CountingFactory:
    """Stands in for build_layer: an identity module per layer, recording which layers were built."""

    def __init__(self):
        self.built = []

    def __call__(self, spec, form):
        self.built.append(spec)
        return nn.Identity()


class ScriptedMonitor:
    """Stands in for patsearch.host.LoadMonitor: each window reports the next of ``loads`` (other processes'
    cores; the last repeats) on a host of ``cores`` cores, so tests never depend on the real host's load."""

    def __init__(self, loads, cores=2):
        self.loads, self.cores, self.windows = list(loads), cores, 0

    def __call__(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        from patsearch.host import Load

        others = self.loads[min(self.windows, len(self.loads) - 1)]
        self.windows += 1
        self.load = Load(seconds=1.0, others_cores=others, own_cores=1.0, cores=self.cores)


def build_quick(path, space, factory, **kw):
    """A CPU table of ``space``'s layers from ``factory``, each timed twice without warm-up (no real timing)."""
    from patsearch.profiler.build import build_table, open_for_build
    from patsearch.profiler.devices import get_device

    dev = get_device("cpu")
    profile = open_for_build(path, dev, dev.protocol, command="pytest build")
    return build_table(profile, space.layer_inputs(), dev, layer_factory=factory, budget=QUICK, progress=False,
                       space_info={"name": space.name}, **kw)
