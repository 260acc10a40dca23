"""Run the shop: send sample events, start a worker process, wait until every run has ended,
and print what happened. Shows steps, retries, on_failure, parallel steps, invoke, send_event,
cancellation, wait_for_event, debounce and concurrency."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

import django_inngest as inngest
from django_inngest.models import FunctionRun
from example_project.shop.functions import client
from example_project.shop.models import Order

#: Runs the demo starts, by function, once everything has ended.
EXPECTED = {
    "shop-process-order": 4,
    "shop-process-order-failure": 1,
    "shop-quote-shipping": 2,
    "shop-email-receipt": 2,
    "shop-collect-invoice": 1,
    "shop-restock": 1,
}


class Command(BaseCommand):
    help = "Send sample events and run a worker until they are processed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        started = timezone.now()
        deadline = time.monotonic() + options["timeout"]
        orders = [
            self._place(customer, card)
            for customer, card in (("ada", "ok"), ("grace", "flaky"), ("linus", "declined"))
        ]
        cancelled = self._place("ada", "ok")
        with transaction.atomic():  # the order and its cancellation commit together
            Order.objects.filter(pk=cancelled.pk).update(status=Order.Status.CANCELLED)
            client.send_sync(
                inngest.Event(name="shop/order.cancelled", data={"order_id": cancelled.pk})
            )
        client.send_sync(inngest.Event(name="shop/invoice.sent", data={"invoice_id": "INV-1"}))
        client.send_sync(
            [
                inngest.Event(name="shop/stock.low", data={"sku": "mug", "left": n})
                for n in (9, 5, 2)
            ]
        )
        self.stdout.write("sent 4 orders (one cancelled), an invoice and 3 low-stock alerts")

        worker = subprocess.Popen(
            [sys.executable, "manage.py", "inngest_worker", "--concurrency", "4"],
            cwd=os.getcwd(),
        )
        try:
            runs = FunctionRun.objects.filter(created_at__gte=started)
            # A payment only counts once the run waits for it (events sent before are missed).
            self._until(
                deadline,
                lambda: runs.filter(function_id="shop-collect-invoice", status="WAITING").exists(),
            )
            client.send_sync(
                inngest.Event(
                    name="shop/invoice.paid", data={"invoice_id": "INV-1", "amount_cents": 4200}
                )
            )
            self._until(deadline, lambda: self._all_ended(runs))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

        self.stdout.write("\nruns:")
        for run in FunctionRun.objects.filter(created_at__gte=started).order_by("id"):
            output = str(run.output)
            self.stdout.write(f"  {run.function_id:28} {run.status:10} {output[:90]}")
        self.stdout.write("\norders:")
        for order in Order.objects.filter(pk__in=[o.pk for o in [*orders, cancelled]]).order_by(
            "pk"
        ):
            self.stdout.write(f"  {order} receipt_sent={order.receipt_sent}")
        self.stdout.write(self.style.SUCCESS("\ndemo finished: every run ended"))

    def _place(self, customer: str, card: str) -> Order:
        with transaction.atomic():  # the event exists exactly when the order does
            order = Order.objects.create(customer=customer, total_cents=4200, card=card)
            client.send_sync(
                inngest.Event(
                    name="shop/order.placed",
                    data={"order_id": order.pk, "card": card, "customer": customer},
                )
            )
        return order

    @staticmethod
    def _all_ended(runs: Any) -> bool:
        ended = {fn: runs.filter(function_id=fn).ended().count() for fn in EXPECTED}
        return ended == EXPECTED and not runs.active().exists()

    @staticmethod
    def _until(deadline: float, condition: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise CommandError("the sample runs did not all end in time; see the worker's log above")
