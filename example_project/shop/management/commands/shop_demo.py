"""Place three orders, run a worker process until their runs end, and print what happened."""

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

import django_inngest as inngest
from django_inngest.models import FunctionRun
from example_project.shop.functions import client
from example_project.shop.models import Order


class Command(BaseCommand):
    help = "Send sample orders and run a worker until they are processed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        started = timezone.now()
        orders = []
        for customer, card in (("ada", "ok"), ("grace", "flaky"), ("linus", "declined")):
            with transaction.atomic():  # the event exists exactly when the order does
                order = Order.objects.create(customer=customer, total_cents=4200, card=card)
                client.send_sync(
                    inngest.Event(
                        name="shop/order.placed", data={"order_id": order.pk, "card": card}
                    )
                )
            orders.append(order)
        self.stdout.write(f"placed {len(orders)} orders; starting a worker")

        worker = subprocess.Popen(
            [sys.executable, "manage.py", "inngest_worker", "--concurrency", "4"],
            cwd=os.getcwd(),
        )
        try:
            self._wait(orders, started, options["timeout"])
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

        self.stdout.write("\nruns:")
        for run in FunctionRun.objects.filter(created_at__gte=started).order_by("id"):
            self.stdout.write(f"  {run.function_id:32} {run.status:10} {run.output}")
        self.stdout.write("\norders:")
        for order in Order.objects.filter(pk__in=[o.pk for o in orders]).order_by("pk"):
            self.stdout.write(f"  {order} receipt_sent={order.receipt_sent}")
        self.stdout.write(self.style.SUCCESS("\ndemo finished: every run ended"))

    def _wait(self, orders: list[Order], started: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        expected = {
            "shop-process-order": 3,
            "shop-email-receipt": 2,
            "shop-process-order-failure": 1,
        }
        while time.monotonic() < deadline:
            runs = FunctionRun.objects.filter(created_at__gte=started)
            ended = {fn: runs.filter(function_id=fn).ended().count() for fn in expected}
            if ended == expected and not runs.active().exists():
                return
            time.sleep(0.5)
        raise CommandError(f"the sample runs did not all end within {timeout:.0f}s")
