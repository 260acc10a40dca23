"""The worker's runtime: the loop that claims and executes runs (`worker`), what a claimed run
does against the database (`claimed`, shared with `testing.drain()`), the LISTEN thread and the
SQLite watcher (`listener`), cron ticks (`scheduler`), the fleet a worker belongs to (`fleet`)
and the thread helpers they share (`threads`). It reaches the database only through `store`.
"""

from django_inngest.runtime.worker import Worker, WorkerConfigError

__all__ = ["Worker", "WorkerConfigError"]
