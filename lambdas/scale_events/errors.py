"""Typed failures of the scale-events Lambda."""

from __future__ import annotations


class ScaleEventsError(Exception):
    """Base class: every failure the scale-events Lambda raises on purpose."""


class InvalidEventError(ScaleEventsError):
    """The invocation event is not an EventBridge scheduled event."""


class StateError(ScaleEventsError):
    """The dedup state could not be read or saved; nothing is published for this run."""


class StateUnreadable(StateError):
    """The saved state is not what this version writes; the run starts a new baseline."""


class StateConflict(StateError):
    """Another run saved the state first (conditional write failed): this run counted nothing."""
