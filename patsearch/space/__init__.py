"""Search spaces over the PATNet family.

Public API (the search consumes this)::

    from patsearch.space import load_space
    space = load_space()              # default spaces/patnet-wide.yaml; or a path, or a name in spaces/ ("tiny")
    space.size()                      # number of distinct networks x resolutions
    cand = space.sample(seed)         # Candidate(arch: ArchConfig, resolution: int), seeded
    cand = space.suggest(trial)       # the same, from an Optuna trial (categorical / suggest_int)
    space.to_candidate(trial.params)  # rebuild a trial's point later; space.to_arch(params) -> ArchConfig
    space.contains(arch, resolution)  # named variants are points of the default space
    space.layer_inputs()              # every distinct layer (what `patsearch profile` measures)

The dimensions derive from ``patsearch.arch.ArchConfig``'s field declarations (``FIELDS``): a new searchable
field is declared once, in ``arch.py``, and the space samples, suggests, parses and validates it. Every
combination of a space's choices is a valid architecture (checked on load), so nothing is rejected while
sampling or searching.
"""
from patsearch.space.space import (
                                   DEFAULT_SPACE,
                                   DEFAULT_SPACE_NAME,
                                   SPACES_DIR,
                                   TOP_FOLDER_SPACE_NAME,
                                   Candidate,
                                   Categorical,
                                   Dimension,
                                   IntRange,
                                   SearchSpace,
                                   SpaceError,
                                   load_space,
)

__all__ = ["load_space", "SearchSpace", "Candidate", "Categorical", "IntRange", "Dimension", "SpaceError",
           "DEFAULT_SPACE", "DEFAULT_SPACE_NAME", "SPACES_DIR",
           "TOP_FOLDER_SPACE_NAME"]
