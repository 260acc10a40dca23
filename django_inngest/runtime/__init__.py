"""The worker's runtime: the loop that claims runs (`worker`), their execution on its loop and
threads (`executor`), what a claimed run does against the database (`claimed`) and what it
ended with (`outcomes`, both shared with `testing.drain()`), the LISTEN thread and the SQLite
watcher (`listener`), the background jobs (`housekeeping`), cron ticks (`scheduler`), the fleet
a worker belongs to (`fleet`), the checks before a start (`startup`) and the thread helpers
they share (`threads`). It reaches the database only through `store`.
"""

from django_inngest.runtime.startup import WorkerConfigError
from django_inngest.runtime.worker import Worker

__all__ = ["Worker", "WorkerConfigError"]
