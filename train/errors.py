"""The one exception type of the training package."""

from __future__ import annotations

from facetubes.errors import FacetubesError


class TrainError(FacetubesError):
    """A training run cannot start or must stop; ``str(e)`` is a complete one-line reason for the user.

    Examples: an empty or single-class dataset, labels that match no tube, a non-finite loss, a run folder that
    already holds a run. The ``train3d`` / ``train2d`` commands print ``error: <message>`` and exit with status 2.
    """
