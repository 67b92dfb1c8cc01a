"""patsearch: hardware-aware architecture search and profiling for PATNet.

The public API is re-exported here; heavy parts (search, training) are imported from their own modules so that
``import patsearch`` stays light.
"""
from patsearch.arch import VARIANTS, ArchConfig, ArchError, LayerSpec, resolve_arch
from patsearch.version import __version__


def __getattr__(name: str):
    # Lazy: importing the models pulls in timm; keep `import patsearch` cheap for the CLI.
    if name in ("create_model", "build_layer", "fuse_model"):
        from patsearch import models

        return getattr(models, name)
    raise AttributeError(f"module 'patsearch' has no attribute {name!r}")


__all__ = ["ArchConfig", "ArchError", "LayerSpec", "VARIANTS", "resolve_arch", "create_model", "build_layer",
           "fuse_model", "__version__"]
