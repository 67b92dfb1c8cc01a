"""Device profiling: named devices and protocols, lookup tables, a calibrated predictor, benchmarks.

Public API (the search consumes this)::

    from patsearch.profiler import load_profile
    profile = load_profile("epyc")        # a device name (its default protocol) or a path to a profile JSON
    profile.metric                        # "latency_ms" (lower is better) or "throughput" (images/s, higher)
    profile.higher_is_better
    profile.predict(arch, 224)            # calibrated prediction of that metric; arch = ArchConfig | name | path
    profile.predict(candidate)            # or a space Candidate(arch, resolution)
    profile.predict_many(candidates)      # numpy array; 10,000 architectures in well under a second
    profile.check_fresh()                 # raises ProfileError if the hardware here differs from the profile's,
                                          # warns (StaleProfileWarning) on another torch release or no GPU here
    profile.fidelity                      # the validation report (within +-5/10 %, MAPE, Kendall tau)

``load_profile`` checks freshness on load (``check=False`` skips, ``allow_stale=True`` downgrades a hardware
mismatch to a warning) and raises a ProfileError naming the command to run when no profile exists.
Building: :func:`build_profile` over a :class:`ProfileOptions` (what ``patsearch profile`` runs; :func:`profile_device`
takes the same as keywords); benchmarking: :func:`build_bench` over a :class:`BenchOptions` (:func:`run_bench`
takes the same as keywords).
"""
from patsearch.profiler.bench_options import BenchOptions, BenchOptionsError
from patsearch.profiler.devices import DEVICES, Device, DeviceError, Protocol, check_hardware, get_device
from patsearch.profiler.options import ProfileOptions, ProfileOptionsError
from patsearch.profiler.table import (
    PROFILES_DIR,
    Profile,
    ProfileError,
    StaleProfileWarning,
    find_profile,
    load_profile,
)


def profile_device(*args, **kwargs):
    """Build (or resume) a device's lookup table and optionally validate it; see :mod:`patsearch.profiler.run`."""
    from patsearch.profiler.run import profile_device as _impl

    return _impl(*args, **kwargs)


def build_profile(*args, **kwargs):
    """:func:`profile_device` over a :class:`ProfileOptions`; see :mod:`patsearch.profiler.run`."""
    from patsearch.profiler.run import build_profile as _impl

    return _impl(*args, **kwargs)


def run_bench(*args, **kwargs):
    """Table 1 style benchmark of PATNet variants and timm peers; see :mod:`patsearch.profiler.bench`."""
    from patsearch.profiler.bench import run_bench as _impl

    return _impl(*args, **kwargs)


def build_bench(*args, **kwargs):
    """:func:`run_bench` over a :class:`BenchOptions`; see :mod:`patsearch.profiler.bench`."""
    from patsearch.profiler.bench import build_bench as _impl

    return _impl(*args, **kwargs)


__all__ = ["load_profile", "find_profile", "Profile", "ProfileError", "StaleProfileWarning", "DEVICES", "Device",
           "DeviceError", "Protocol", "get_device", "check_hardware", "profile_device", "run_bench",
           "ProfileOptions", "ProfileOptionsError", "build_profile",
           "BenchOptions", "BenchOptionsError", "build_bench",
           "PROFILES_DIR"]
