"""Who may use the REST API: the project's DRF authentication (session, token, ...) or an
Inngest-style signing key (``Authorization: Bearer <key>``), and Django permissions per action.

Reads need the model's ``view_`` permission; cancelling needs ``cancel_functionrun`` and
rerunning ``rerun_functionrun`` (the admin's permissions). A signing key acts with every permission, as it does in Inngest.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from django_inngest import conf


class SigningKeyUser:
    """The caller of a request authenticated by a signing key: it may do everything."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None
    username = "signing-key"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return True

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return "signing key"


class SigningKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>`` where the key is one of ``INNGEST["SIGNING_KEYS"]``.

    Any other bearer token is left to the project's other authentication classes.
    """

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[SigningKeyUser, str] | None:
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != self.keyword:
            return None
        given = hashlib.sha256(parts[1]).digest()
        matched = False
        for key in conf.get().SIGNING_KEYS:
            matched |= hmac.compare_digest(given, hashlib.sha256(key.encode("utf-8")).digest())
        return (SigningKeyUser(), "signing-key") if matched else None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="django-inngest"'


class SigningKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the OpenAPI schema describes `SigningKeyAuthentication`."""

    target_class = SigningKeyAuthentication
    name = "signingKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "One of INNGEST['SIGNING_KEYS'].",
        }


class HasInngestPermission(BasePermission):
    """The caller is authenticated and holds the Django permission the view names for the
    request's method (`required_permissions`)."""

    message = "you do not have the permission this action needs"

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        required: dict[str, str] = getattr(view, "required_permissions", {})
        method = request.method or ""
        permission = required.get("GET" if method in ("HEAD", "OPTIONS") else method)
        if permission is None:
            return False
        self.message = f"this action needs the permission {permission!r}"
        return bool(user.has_perm(permission))
