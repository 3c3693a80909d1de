"""lakebox's user-facing error: reported as one clear line and a non-zero exit."""

from __future__ import annotations


class LakeboxError(Exception):
    """Something the user can fix: a missing file, an unknown name, a template lakebox cannot run."""


class RunAborted(KeyboardInterrupt):
    """Ctrl-C stopped a state machine run; it is recorded ABORTED, as Step Functions records a stopped execution."""
