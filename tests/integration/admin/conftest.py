"""Fixtures of the admin tests: the shop's functions, and users with and without the custom
permissions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from tests.admin_scenarios import Shop, open_shop


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Every test logs a user in; the default hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def shop(inngest_client: inngest.Inngest, clock: FrozenClock) -> Shop:
    return open_shop(inngest_client, clock)


def staff_client(django_user_model: Any, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_inngest", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(db: None, django_user_model: Any) -> Client:
    """Staff who may look at runs and events but not act on them."""
    return staff_client(django_user_model, "viewer", "view_functionrun", "view_event")


@pytest.fixture
def operator(db: None, django_user_model: Any) -> Client:
    """Staff who may cancel, rerun and send events."""
    return staff_client(
        django_user_model,
        "operator",
        "view_functionrun",
        "view_event",
        "cancel_functionrun",
        "rerun_functionrun",
        "send_event",
    )
