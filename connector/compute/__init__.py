"""Where a sync's models run beyond this process: actors on a Ray cluster (the ``ray`` extra).

``compute.engine = "ray"`` (``connector sync --ray [ADDRESS]``) keeps reading, planning, deleting
and recording in the sync's process and sends the encoding of each window to Ray actors; see
:class:`RayCompute`. Ray is imported only when a run uses it.
"""

from __future__ import annotations

from connector.compute._actor import ActorReport, EncodeActor, Encoded, Role, WriteTarget
from connector.compute._ray import RayCompute, RayRun, import_ray

__all__ = [
    "ActorReport",
    "EncodeActor",
    "Encoded",
    "RayCompute",
    "RayRun",
    "Role",
    "WriteTarget",
    "import_ray",
]
