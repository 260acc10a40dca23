"""`manage.py inngest_send NAME [--data JSON] [--id ID]`: send one event."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import django_inngest as inngest
from django_inngest.client import default_client
from django_inngest.core.errors import InvalidEventError


class Command(BaseCommand):
    """``manage.py inngest_send NAME``: send one event through the default client."""

    help = "Send one event; prints its id."

    def add_arguments(self, parser: CommandParser) -> None:
        """The event's name, and `--data` (a JSON object) and `--id` (the sender's id)."""
        parser.add_argument("name", help='The event name, such as "shop/order.placed".')
        parser.add_argument("--data", default="{}", help="A JSON object (default {}).")
        parser.add_argument("--id", default="", help="The sender's id, for de-duplication.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Send the event and print its id; data that is not JSON or an invalid event is a
        `CommandError` naming the value."""
        try:
            data = json.loads(options["data"])
        except json.JSONDecodeError as error:
            raise CommandError(f"--data is not JSON: {error}: {options['data']!r}") from None
        try:
            event = inngest.Event(name=options["name"], data=data, id=options["id"])
            [event_id] = default_client().send_sync(event)
        except InvalidEventError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(event_id)
