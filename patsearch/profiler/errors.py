"""The profiler's error type, in its own module so that the table and the predictor both raise it without
importing each other."""
from patsearch.errors import UserError


class ProfileError(UserError):
    """A profile is missing, corrupt, made for something else, or stale."""
