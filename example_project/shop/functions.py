"""The shop's durable functions: discovered automatically by django_inngest."""

import logging
from datetime import timedelta

import django_inngest as inngest
from example_project.shop.models import Order

client = inngest.Inngest(app_id="shop", logger=logging.getLogger("shop"))


class CardGatewayTimeout(ConnectionError):
    pass


def reserve_stock(order_id: int) -> str:
    Order.objects.filter(pk=order_id).update(status=Order.Status.RESERVED)
    return f"stock reserved for order {order_id}"


def charge_card(order_id: int, card: str, attempt: int) -> dict:
    if card == "declined":
        raise inngest.NonRetriableError(f"card declined for order {order_id}")
    if card == "flaky" and attempt == 0:
        raise CardGatewayTimeout("the card gateway timed out; the step will be retried")
    Order.objects.filter(pk=order_id).update(status=Order.Status.PAID)
    return {"order_id": order_id, "charged": True, "attempt": attempt}


def refund_order(ctx: inngest.ContextSync) -> str:
    """on_failure: runs as its own run with the inngest/function.failed event."""
    order_id = ctx.event.data["event"]["data"]["order_id"]
    Order.objects.filter(pk=order_id).update(status=Order.Status.REFUNDED)
    ctx.logger.info("refunded order %s after: %s", order_id, ctx.event.data["error"]["message"])
    return f"refunded order {order_id}"


@client.create_function(
    fn_id="process-order",
    name="Process an order",
    trigger=inngest.TriggerEvent(event="shop/order.placed"),
    retries=3,
    on_failure=refund_order,
)
def process_order(ctx: inngest.ContextSync, step: inngest.StepSync) -> dict:
    order_id = ctx.event.data["order_id"]
    ctx.logger.info("processing order %s", order_id)
    step.run("reserve-stock", reserve_stock, order_id)
    charge = step.run("charge-card", charge_card, order_id, ctx.event.data["card"], ctx.attempt)
    step.sleep("wait-for-packing", timedelta(seconds=2))
    label, weight = ctx.group.parallel(
        (
            lambda: step.run("print-label", lambda: f"LABEL-{order_id}"),
            lambda: step.run("weigh-parcel", lambda: 1.5),
        )
    )
    Order.objects.filter(pk=order_id).update(status=Order.Status.SHIPPED)
    step.send_event(
        "announce-shipment",
        inngest.Event(name="shop/order.shipped", data={"order_id": order_id, "label": label}),
    )
    return {"order_id": order_id, "label": label, "kg": weight, "charge": charge}


@client.create_function(
    fn_id="email-receipt",
    trigger=inngest.TriggerEvent(event="shop/order.shipped"),
)
async def email_receipt(ctx: inngest.Context) -> str:
    order_id = ctx.event.data["order_id"]

    def send_email() -> str:
        Order.objects.filter(pk=order_id).update(receipt_sent=True)
        return f"receipt for order {order_id} sent"

    return await ctx.step.run("send-email", send_email)


@client.create_function(
    fn_id="daily-sales-report",
    trigger=inngest.TriggerCron(cron="TZ=Europe/Paris 0 7 * * *"),
)
def daily_sales_report(ctx: inngest.ContextSync, step: inngest.StepSync) -> dict:
    """Every morning at 07:00 in Paris; ctx.event is the inngest/scheduled.timer event."""
    shipped = step.run(
        "count-shipped-orders",
        lambda: Order.objects.filter(status=Order.Status.SHIPPED).count(),
    )
    return {"scheduled_at": ctx.event.data["scheduledAt"], "shipped_orders": shipped}
