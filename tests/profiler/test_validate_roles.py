"""Re-validating a profile with another seed keeps the stored roles in step with the fidelity report."""
from types import SimpleNamespace

from patsearch.profiler.validate import assign_roles, split_samples
from patsearch.space import load_space


def test_networks_of_an_earlier_validation_become_earlier():
    space = load_space("tiny")
    first = split_samples(space, 4, 3, seed=0)
    second = split_samples(space, 4, 3, seed=1)
    profile = SimpleNamespace(networks={key: {"role": role} for key, _, _, role in first})
    for key, _, _, role in second:
        profile.networks.setdefault(key, {"role": "measured"})
    assign_roles(profile, second)
    roles = {key: n["role"] for key, n in profile.networks.items()}
    current = {key: role for key, _, _, role in second}
    assert {k: r for k, r in roles.items() if k in current} == current
    assert all(r == "earlier" for k, r in roles.items() if k not in current)
    assert sum(r == "evaluation" for r in roles.values()) == 3
