"""The queue of measurement requests for agents on target devices, in the study storage (SQL).

Three tables beside the tokens: ``nas_agents`` (who registered under which target name, with
which hardware fingerprint, last seen when), ``nas_measure_models`` (ONNX models by SHA-256) and
``nas_measure_requests`` (one model to time with given settings on a target: queued, leased,
done, failed or cancelled).

Leases: an agent leases the oldest queued request of its target for ``lease_s`` seconds (its own
setting: it renews the lease every third of that while it measures) and at most ``max_lease_s``
in all (the requester's); a lease not renewed in time, or held too long, expires and the request
is queued again, for any agent of the target, up to MAX_ATTEMPTS leases. Nothing runs in the
background: expiry is applied whenever the target's queue is read or leased, so the server keeps
no state of its own and may restart at any time. An agent is alive while it was seen (it polls,
renews or posts) within its ``lease_s``; several agents of one target share its queue, and all
agents of a target measure on hardware of one fingerprint.

Errors are ``QueueError`` with the HTTP status the routes answer.
"""

from web.measurements.queue import MeasureQueue
from web.measurements.tables import MAX_ATTEMPTS, QueueError

__all__ = ["MAX_ATTEMPTS", "MeasureQueue", "QueueError"]
