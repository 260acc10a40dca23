"""The README's async example, as written, against the ORM: an `async def` handler whose
`await ctx.step.run("fetch-urls", fetch_urls, ...)` passes a plain function that queries the
database. The worker, `drain()` and `run_function()` all run such a callable off the event loop,
where Django allows the ORM (issue 18)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import django_inngest as inngest
from django_inngest.models import FunctionRun, RunStep
from django_inngest.runtime import Worker
from django_inngest.testing import drain, frozen_clock, run_function
from tests.testapp.functions import client, import_images
from tests.testapp.models import WorkLog

IMPORTED = inngest.Event(name="shop/product.imported", data={"product_id": 7})


@pytest.mark.django_db
def test_run_function_runs_a_plain_step_callable_that_uses_the_orm() -> None:
    WorkLog.objects.create(key="existing", run_id="", started=0, ended=0)
    result = run_function(import_images, IMPORTED)
    assert (result.status, result.output) == ("COMPLETED", {"count": 2}), result.error
    assert WorkLog.objects.filter(key="product-7").count() == 1, "the step ran once"


@pytest.mark.django_db
def test_drain_runs_a_plain_step_callable_that_uses_the_orm_in_the_tests_transaction() -> None:
    WorkLog.objects.create(key="existing", run_id="", started=0, ended=0)
    with frozen_clock() as clock:
        client.send_sync(IMPORTED)
        assert drain(functions=[import_images]).sleeping == 1
        clock.advance(timedelta(minutes=5))
        assert drain(functions=[import_images]).completed == 1
    run = FunctionRun.objects.get(function_id="e2e-import-product-images")
    assert run.output == {"count": 2}
    assert WorkLog.objects.filter(key="product-7").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_a_plain_step_callable_that_uses_the_orm() -> None:
    with frozen_clock() as clock:
        client.send_sync(IMPORTED)
        Worker(burst=True).run()
        clock.advance(timedelta(minutes=5))
        Worker(burst=True).run()
    run = FunctionRun.objects.get(function_id="e2e-import-product-images")
    assert (run.status, run.output) == ("COMPLETED", {"count": 1})
    assert RunStep.objects.get(run=run, step_id="fetch-urls").output == [
        "https://img.example/product-7.png"
    ]
