"""The runs of ``agentctl batch --ray ADDRESS``: each one a Ray task on the cluster.

Called by :mod:`agentctl.cli.batch` only when ``--ray`` is given (the only importer of Ray
here). Each task runs :func:`agentctl.cli.batch_jobs.run_job` on its node: a normal
``agentctl run`` process there, whose outcome is read from its log on that node and sent
back. Run directories and workspaces are the paths the batch chose, so on a cluster of
several machines they belong on a filesystem every node shares. A task is never rerun by
Ray (a run is not idempotent); a run whose node or worker was lost is reported ``lost``
and can be continued with ``agentctl run --resume`` from its run directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import ray
import ray.exceptions

from ..services.ray_plane import connect
from .batch_jobs import Job, Outcome, run_all, run_job

__all__ = ["run_on_cluster"]


def _task(job: Job) -> Outcome:
    return run_job(job, node=ray.get_runtime_context().get_node_id())


_remote_task = ray.remote(num_cpus=1, max_retries=0)(_task)


async def run_on_cluster(jobs: list[Job], parallel: int, address: str, progress: Callable[[Outcome], None],
                         started: Callable[[Job], None] | None = None) -> list[Outcome]:
    """Every job as a Ray task on the cluster at ``address``, at most ``parallel`` submitted at once."""
    connect(address)

    async def on_cluster(job: Job) -> Outcome:
        start = time.perf_counter()
        ref = _remote_task.options(name=job.name).remote(job)
        try:
            outcome: Outcome = await asyncio.wrap_future(ref.future())
        except ray.exceptions.RayError as exc:
            return Outcome(job, "lost", None, round(time.perf_counter() - start, 3),
                           error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        except BaseException:
            ray.cancel(ref, force=True)
            raise
        return outcome

    return await run_all(jobs, parallel, on_cluster, progress, started)
