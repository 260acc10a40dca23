"""The public API as a user calls it, checked by `mypy --strict` in `make typecheck`.

Each `type: ignore[...]` marks a mistake that must stay a type error: strict mypy reports an
ignore that no longer silences anything, so the check fails if the API loses its types.
Never imported or run; pytest does not collect it.
"""

from __future__ import annotations

from datetime import timedelta

import django_inngest as inngest

client = inngest.Inngest(app_id="shop")


@client.create_function(
    fn_id="import-images",
    trigger=inngest.TriggerEvent(event="shop/product.imported"),
    retries=4,
    throttle=inngest.Throttle(limit=10, period=timedelta(minutes=1)),
    concurrency=[inngest.Concurrency(limit=2, key="event.data.shop_id")],
)
async def import_images(ctx: inngest.Context) -> dict[str, int]:
    urls: list[str] = await ctx.step.run("fetch-urls", lambda: ["a", "b"])
    await ctx.step.sleep("cool-down", timedelta(minutes=5))
    return {"count": len(urls)}


@inngest.create_function(fn_id="nightly", trigger=inngest.TriggerCron(cron="0 3 * * *"))
def nightly(ctx: inngest.ContextSync) -> None:
    ctx.step.run("tidy", lambda: None)


ids: list[str] = inngest.send_sync(inngest.Event(name="shop/product.imported", data={"id": 7}))
seeded: list[str] = inngest.send_sync(
    [inngest.Event(name="shop/product.imported")], id_seed="1700000000000,AAAAAAAAAAAAAAAA"
)
function: inngest.Function = import_images


async def send_from_async_code() -> list[str]:
    return await inngest.send(inngest.Event(name="shop/ping"), id_seed=None)


# Mistakes a user makes, which must be type errors:
inngest.create_function(fn_idd="typo", trigger=inngest.TriggerEvent(event="t"))  # type: ignore[call-arg]
client.create_function(fn_id="x", trigger=inngest.TriggerEvent(event="t"), retries="4")  # type: ignore[arg-type]
inngest.send_sync(inngest.Event(name="t"), seed="x")  # type: ignore[call-arg]
inngest.create_function(fn_id="no-trigger")  # type: ignore[call-arg]
client.create_function(fn_id="x", trigger=inngest.TriggerCron(cron="* * * * *"), retry=2)  # type: ignore[call-arg]
inngest.Function(app_id="a", handler=print, fn_idd="x", trigger=[])  # type: ignore[call-arg]
