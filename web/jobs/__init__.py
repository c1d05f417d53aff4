"""Jobs the service starts, recorded in the study storage so a restarted server finds them: the
store (store.py), the runner contract (runner.py) and its two implementations, processes on this
machine (local.py) and Ray jobs on a cluster (ray.py)."""

from web.jobs.store import CheckTimeout, JobStore
from web.jobs.table import jobs

__all__ = ["CheckTimeout", "JobStore", "jobs"]
