"""A small shop whose runs end in the states the admin shows: failed after retries, sleeping,
completed. Used by the admin's integration tests and its browser tests.

Step bodies move the frozen clock forward to stand for the time real work takes, so timelines
have lengths to draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain


class CardDeclinedError(Exception):
    """The payment provider refused the card."""


@dataclass
class Shop:
    client: inngest.Inngest
    clock: FrozenClock
    declined: set[int] = field(default_factory=set)
    """Orders whose card is declined."""
    calls: list[str] = field(default_factory=list)
    """Step bodies in the order they ran."""

    def work(self, name: str, seconds: float) -> None:
        self.calls.append(name)
        self.clock.advance(timedelta(seconds=seconds))

    def order(self, order_id: int, *, declined: bool = False, **data: Any) -> FunctionRun:
        """Send `shop/order.placed` and drain; the run ends completed or failed."""
        if declined:
            self.declined.add(order_id)
        [event_id] = self.client.send_sync(
            inngest.Event(name="shop/order.placed", data={"order_id": order_id, **data})
        )
        drain()
        return FunctionRun.objects.get(event_id=event_id)

    def abandoned_cart(self, cart_id: int) -> FunctionRun:
        """Send `shop/cart.abandoned` and drain; the run sleeps for a day."""
        [event_id] = self.client.send_sync(
            inngest.Event(name="shop/cart.abandoned", data={"cart_id": cart_id})
        )
        drain()
        return FunctionRun.objects.get(event_id=event_id)


def open_shop(client: inngest.Inngest, clock: FrozenClock) -> Shop:
    """Register the shop's functions on `client` (use an isolated registry)."""
    shop = Shop(client=client, clock=clock)

    def load_order(order_id: int) -> dict[str, Any]:
        shop.work("load-order", 0.4)
        return {"order_id": order_id, "total": 4200, "currency": "EUR"}

    def charge_card(order: dict[str, Any]) -> dict[str, Any]:
        shop.work("charge-card", 1.5)
        if order["order_id"] in shop.declined:
            raise CardDeclinedError(f"card declined for order {order['order_id']}")
        return {"charge_id": f"ch_{order['order_id']}", "amount": order["total"]}

    def email_receipt(receipt: dict[str, Any]) -> str:
        shop.work("email-receipt", 0.8)
        return f"receipt sent for {receipt['charge_id']}"

    @client.create_function(
        fn_id="charge-order",
        name="Charge order",
        trigger=inngest.TriggerEvent(event="shop/order.placed"),
        retries=2,
    )
    def charge_order(ctx: inngest.ContextSync, step: inngest.StepSync) -> dict[str, Any]:
        order = step.run("load-order", load_order, ctx.event.data["order_id"])
        receipt = step.run("charge-card", charge_card, order)
        step.run("email-receipt", email_receipt, receipt)
        return {"receipt": receipt}

    @client.create_function(
        fn_id="cart-reminder", trigger=inngest.TriggerEvent(event="shop/cart.abandoned")
    )
    def cart_reminder(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.run("find-cart", lambda: shop.work("find-cart", 0.3) or ctx.event.data["cart_id"])
        step.sleep("wait-a-day", timedelta(days=1))
        return str(step.run("send-reminder", lambda: shop.work("send-reminder", 0.5) or "sent"))

    return shop
