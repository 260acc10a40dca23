"""Thin views: each checks its input, reads the models or calls `client.py` / `store/`, and
answers in Inngest's shapes. Every refusal is a 4xx whose message names the problem; none
writes anything.

The event endpoint answers ``{"ids": [...], "status": 200}`` or ``{"ids": [], "status": 4xx,
"error": "..."}`` as Inngest's event API does; REST v1 answers ``{"data": ...}`` and, on
errors, ``{"error": "...", "status": 4xx}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import DataError, transaction
from django.http import HttpRequest
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler

from django_inngest import conf, store
from django_inngest.api import ingest
from django_inngest.api.auth import HasInngestPermission, SigningKeyAuthentication
from django_inngest.api.serializers import (
    CancellationRequestSerializer,
    CancellationSerializer,
    ErrorSerializer,
    EventInSerializer,
    EventSerializer,
    FunctionSerializer,
    ReplayRequestSerializer,
    ReplaySerializer,
    RerunRequestSerializer,
    RunDetailSerializer,
    RunSerializer,
    SendEventsResultSerializer,
)
from django_inngest.client import default_client
from django_inngest.core import clock
from django_inngest.core.errors import (
    InvalidEventError,
    InvalidEventIdSeedError,
    RunEndedError,
    RunNotFoundError,
)
from django_inngest.core.expressions import ExpressionError
from django_inngest.models import Cancellation, Event, FunctionRun
from django_inngest.registry import registry

logger = logging.getLogger("django_inngest.api")

SEED_HEADER = "HTTP_X_INNGEST_EVENT_ID_SEED"


class FirstRenderer(BaseContentNegotiation):
    """Always answer JSON, whatever the client's Accept header asks for."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        for parser in parsers:
            if parser.media_type == request.content_type.split(";")[0].strip():
                return parser
        return None

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type or "application/json"


class JSONBodyParser(JSONParser):
    """DRF's JSON parser, with deeply nested bodies refused as a 400 instead of a crash."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the body nests too deeply") from None


_Method = TypeVar("_Method", bound=Callable[..., Response])


def openapi(**options: Any) -> Callable[[_Method], _Method]:
    """`extend_schema` for a view method, based on drf-spectacular's `AutoSchema` even when the
    project's ``DEFAULT_SCHEMA_CLASS`` is DRF's own, so projects need no schema settings."""

    def decorate(method: _Method) -> _Method:
        method.kwargs = {"schema": AutoSchema}  # type: ignore[attr-defined]
        decorated: _Method = extend_schema(**options)(method)
        return decorated

    return decorate


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "the resource is not in a state that allows this"
    default_code = "conflict"


# --- event ingestion --------------------------------------------------------------------------


class SendEventsView(APIView):
    """``POST e/<event_key>``: Inngest's event API. Authenticated by the key in the URL."""

    authentication_classes: Sequence[type[BaseAuthentication]] = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()
    parser_classes = ()  # the body is read by `ingest.read_body`, under its size limit
    renderer_classes: Sequence[type[BaseRenderer]] = (JSONRenderer,)
    content_negotiation_class = FirstRenderer
    schema = AutoSchema()

    @openapi(
        operation_id="send_events",
        summary="Send one event or an array of events",
        request=EventInSerializer(many=True),
        responses={
            200: SendEventsResultSerializer,
            400: SendEventsResultSerializer,
            401: SendEventsResultSerializer,
            411: SendEventsResultSerializer,
            413: SendEventsResultSerializer,
        },
        auth=[],
    )
    def post(self, request: Request, event_key: str) -> Response:
        settings = conf.get()
        http_request: HttpRequest = request._request
        seed = http_request.META.get(SEED_HEADER) or None
        try:
            ingest.check_event_key(event_key, settings)
            body = ingest.read_body(http_request, settings.MAX_REQUEST_BYTES)
            events = ingest.parse_events(body, max_events=settings.MAX_EVENTS_PER_REQUEST)
            with transaction.atomic(using=settings.DATABASE):
                ids = default_client().send_sync(events, id_seed=seed)
        except ingest.Rejected as rejected:
            return _refuse_events(rejected.status, rejected.message)
        except (InvalidEventError, InvalidEventIdSeedError) as error:
            return _refuse_events(400, str(error))
        except DataError as error:  # a value the database refuses that the checks let through
            logger.warning("event refused by the database error=%s", error)
            return _refuse_events(400, f"the events could not be stored: {error}")
        return Response({"ids": ids, "status": 200})

    def get_exception_handler(self) -> Any:
        return events_exception_handler


def events_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's own refusals (a wrong method, say) in the event API's shape."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    response.data = {"ids": [], "status": response.status_code, "error": _message(detail)}
    return response


def _refuse_events(status_code: int, message: str) -> Response:
    logger.info("events refused status=%s error=%s", status_code, message)
    return Response({"ids": [], "status": status_code, "error": message}, status=status_code)


# --- REST v1 ----------------------------------------------------------------------------------


def v1_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handling, reshaped as ``{"error": "...", "status": N}`` (plus `fields` for
    validation errors)."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    body: dict[str, Any] = {"error": _message(detail), "status": response.status_code}
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        body["fields"] = detail
    response.data = body
    return response


def _message(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {_message(value)}" for field, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_message(item) for item in detail)
    return str(detail)


class V1View(APIView):
    """Base of the REST v1 views: DRF authentication plus signing keys, Django permissions
    named per method in `required_permissions`, JSON in and out."""

    permission_classes = (HasInngestPermission,)
    parser_classes = (JSONBodyParser,)
    renderer_classes: Sequence[type[BaseRenderer]] = (JSONRenderer,)
    content_negotiation_class = FirstRenderer
    schema = AutoSchema()
    required_permissions: ClassVar[dict[str, str]] = {}

    def get_authenticators(self) -> list[BaseAuthentication]:
        classes = cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
        configured = [auth() for auth in classes]
        return [SigningKeyAuthentication(), *configured]

    def get_exception_handler(self) -> Any:
        return v1_exception_handler


def _data(value: Any, status_code: int = 200) -> Response:
    return Response(
        {"data": value, "metadata": {"fetched_at": clock.now().isoformat()}}, status=status_code
    )


def _all(serializer_class: Any, items: Iterable[Any]) -> list[Any]:
    return list(serializer_class(items, many=True).data)


def _username(user: Any) -> str:
    get_username = getattr(user, "get_username", None)
    return str(get_username() if callable(get_username) else user)


def _envelope(name: str, serializer: Any) -> Any:
    return inline_serializer(name=name, fields={"data": serializer})


_ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404)}


_ULID = re.compile(r"[0-9A-Z]{26}")


def _is_ulid(value: str) -> bool:
    """Ids in paths are checked before a query: a database may refuse some text (NUL)."""
    return _ULID.fullmatch(value) is not None


def _require_run_id(run_id: str) -> None:
    if not _is_ulid(run_id):
        raise exceptions.NotFound(str(RunNotFoundError(run_id)))


def _run_or_404(run_id: str) -> FunctionRun:
    run = (
        FunctionRun.objects.using(store.alias()).filter(id=run_id).first()
        if _is_ulid(run_id)
        else None
    )
    if run is None:
        raise exceptions.NotFound(str(RunNotFoundError(run_id)))
    return run


class EventView(V1View):
    required_permissions = {"GET": "django_inngest.view_event"}

    @openapi(
        operation_id="get_event",
        responses={200: _envelope("EventEnvelope", EventSerializer()), **_ERRORS},
    )
    def get(self, request: Request, event_id: str) -> Response:
        event = (
            Event.objects.using(store.alias()).filter(id=event_id).first()
            if _is_ulid(event_id)
            else None
        )
        if event is None:
            raise exceptions.NotFound(f"no event with id {event_id!r}")
        return _data(EventSerializer(event).data)


class EventRunsView(V1View):
    required_permissions = {"GET": "django_inngest.view_functionrun"}

    @openapi(
        operation_id="get_event_runs",
        summary="The runs an event started",
        responses={200: _envelope("RunListEnvelope", RunSerializer(many=True)), **_ERRORS},
    )
    def get(self, request: Request, event_id: str) -> Response:
        db = store.alias()
        event = Event.objects.using(db).filter(id=event_id).first() if _is_ulid(event_id) else None
        if event is None:
            raise exceptions.NotFound(f"no event with id {event_id!r}")
        run_ids = store.run_ids_of_event(event.id, received_at=event.received_at)
        runs = FunctionRun.objects.using(db).filter(id__in=run_ids).order_by("id")
        return _data(_all(RunSerializer, runs))


class RunView(V1View):
    required_permissions = {
        "GET": "django_inngest.view_functionrun",
        "DELETE": "django_inngest.cancel_functionrun",
    }

    @openapi(
        operation_id="get_run",
        summary="A run, with its steps",
        responses={200: _envelope("RunEnvelope", RunDetailSerializer()), **_ERRORS},
    )
    def get(self, request: Request, run_id: str) -> Response:
        return _data(RunDetailSerializer(_run_or_404(run_id)).data)

    @openapi(
        operation_id="cancel_run",
        summary="Cancel a run that has not ended",
        responses={
            200: _envelope("CancelledRunEnvelope", RunDetailSerializer()),
            409: ErrorSerializer,
            **_ERRORS,
        },
    )
    def delete(self, request: Request, run_id: str) -> Response:
        _require_run_id(run_id)
        try:
            default_client().cancel(run_id)
        except RunNotFoundError as error:
            raise exceptions.NotFound(str(error)) from None
        except RunEndedError as error:
            raise Conflict(str(error)) from None
        logger.info("run cancelled over HTTP run_id=%s by=%s", run_id, request.user)
        return _data(RunDetailSerializer(_run_or_404(run_id)).data)


class RerunView(V1View):
    required_permissions = {"POST": "django_inngest.rerun_functionrun"}

    @openapi(
        operation_id="rerun",
        summary="Start a new run with the same events",
        request=RerunRequestSerializer,
        responses={201: _envelope("RerunEnvelope", RunSerializer()), **_ERRORS},
    )
    def post(self, request: Request, run_id: str) -> Response:
        body = RerunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _require_run_id(run_id)
        try:
            new_id = default_client().rerun(run_id, from_step=body.validated_data.get("from_step"))
        except RunNotFoundError as error:
            raise exceptions.NotFound(str(error)) from None
        except ValueError as error:  # no such step in the run
            raise exceptions.ValidationError({"from_step": str(error)}) from None
        return _data(RunSerializer(_run_or_404(new_id)).data, status.HTTP_201_CREATED)


class CancellationsView(V1View):
    required_permissions = {
        "GET": "django_inngest.view_cancellation",
        "POST": "django_inngest.cancel_functionrun",
    }

    @openapi(
        operation_id="list_cancellations",
        summary="Bulk cancellations made so far, newest first",
        responses={
            200: _envelope("CancellationListEnvelope", CancellationSerializer(many=True)),
            **_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        records = Cancellation.objects.using(store.alias()).order_by("-id")[:1000]
        return _data(_all(CancellationSerializer, records))

    @openapi(
        operation_id="create_cancellation",
        summary="Cancel the runs of a function enqueued in a window",
        request=CancellationRequestSerializer,
        responses={
            201: _envelope("CancellationEnvelope", CancellationSerializer()),
            **_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        body = CancellationRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        app_id, function_id = values["app_id"], values["function_id"]
        full_id = _function_of_app(app_id, function_id)
        started_before = values.get("started_before") or clock.now()
        try:
            cancelled = default_client().cancel_runs(
                full_id,
                started_after=values.get("started_after"),
                started_before=started_before,
                if_exp=values.get("if"),
            )
        except ExpressionError as error:
            raise exceptions.ValidationError({"if": str(error)}) from None
        record = store.record_cancellation(
            app_id=app_id,
            function_id=full_id,
            started_after=values.get("started_after"),
            started_before=started_before,
            if_exp=values.get("if"),
            requested_by=_username(request.user),
            cancelled_runs=len(cancelled),
            now=clock.now(),
        )
        logger.info(
            "bulk cancellation fn=%s cancelled=%s by=%s", full_id, len(cancelled), request.user
        )
        return _data(CancellationSerializer(record).data, status.HTTP_201_CREATED)


class ReplaysView(V1View):
    required_permissions = {"POST": "django_inngest.rerun_functionrun"}

    @openapi(
        operation_id="create_replay",
        summary="Rerun the failed (or cancelled) runs of a function enqueued in a window",
        request=ReplayRequestSerializer,
        responses={
            200: _envelope("ReplayPreviewEnvelope", ReplaySerializer()),
            201: _envelope("ReplayEnvelope", ReplaySerializer()),
            **_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        body = ReplayRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        full_id = _function_of_app(values["app_id"], values["function_id"])
        window = {
            "statuses": values["statuses"],
            "started_after": values.get("started_after"),
            "started_before": values.get("started_before"),
        }
        client = default_client()
        try:
            run_ids = client.replay_candidates(full_id, **window)
        except ValueError as error:
            raise exceptions.ValidationError({"non_field_errors": [str(error)]}) from None
        new_ids = [] if values["preview"] else [client.rerun(run_id) for run_id in run_ids]
        if new_ids:
            logger.info("bulk replay fn=%s runs=%s by=%s", full_id, len(new_ids), request.user)
        reply = {
            "function_id": full_id,
            "runs": len(run_ids),
            "run_ids": run_ids,
            "new_run_ids": new_ids,
        }
        return _data(
            ReplaySerializer(reply).data,
            status.HTTP_200_OK if values["preview"] else status.HTTP_201_CREATED,
        )


def _function_of_app(app_id: str, function_id: str) -> str:
    """The full id of `function_id` (local or full) in app `app_id`: a registered function,
    or one that has runs (its code may be gone while runs remain)."""
    candidates = [f"{app_id}-{function_id}"]
    if function_id.startswith(f"{app_id}-"):
        candidates.append(function_id)
    for candidate in candidates:
        if registry.get(candidate) is not None:
            return candidate
    for candidate in candidates:
        if FunctionRun.objects.using(store.alias()).filter(function_id=candidate).exists():
            return candidate
    raise exceptions.NotFound(f"no function {function_id!r} in app {app_id!r}")


class FunctionsView(V1View):
    required_permissions = {"GET": "django_inngest.view_functionrun"}

    @openapi(
        operation_id="list_functions",
        summary="Registered functions",
        responses={
            200: _envelope("FunctionListEnvelope", FunctionSerializer(many=True)),
            **_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        return _data(_all(FunctionSerializer, registry.all()))


class AppFunctionsView(V1View):
    required_permissions = {"GET": "django_inngest.view_functionrun"}

    @openapi(
        operation_id="list_app_functions",
        summary="Registered functions of one app",
        responses={
            200: _envelope("AppFunctionListEnvelope", FunctionSerializer(many=True)),
            **_ERRORS,
        },
    )
    def get(self, request: Request, app_id: str) -> Response:
        return _data(_all(FunctionSerializer, [f for f in registry.all() if f.app_id == app_id]))


# --- schema -----------------------------------------------------------------------------------


class OpenAPISchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema of this API, with its mount point as the server URL."""

    renderer_classes = [OpenApiJsonRenderer]
    content_negotiation_class = FirstRenderer
    permission_classes = (AllowAny,)
    authentication_classes: Sequence[type[BaseAuthentication]] = ()
    serve_public = True
    custom_settings = {
        "TITLE": "django-inngest API",
        "DESCRIPTION": "Inngest's event API and REST v1, served by a Django project.",
        "VERSION": "1",
    }

    @openapi(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]
        mount = (
            request.path[: -len("openapi.json")] if request.path.endswith("openapi.json") else "/"
        )
        response.data["servers"] = [{"url": mount}]
        return response


__all__ = [
    "AppFunctionsView",
    "CancellationsView",
    "EventRunsView",
    "EventView",
    "FunctionsView",
    "OpenAPISchemaView",
    "RerunView",
    "RunView",
    "SendEventsView",
    "serializers",
]


class PrometheusRenderer(BaseRenderer):
    """Prometheus' text format for the metrics; errors (a dict) as JSON."""

    media_type = "text/plain"
    format = "prometheus"
    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return JSONRenderer().render(data)


class MetricsView(V1View):
    """The fleet's metrics for Prometheus (`django_inngest.metrics`); a signing key as bearer
    token, or a user with the permission to view runs."""

    required_permissions = {"GET": "django_inngest.view_functionrun"}
    renderer_classes = (PrometheusRenderer,)

    @openapi(exclude=True)
    def get(self, request: Request) -> Response:
        from django_inngest import metrics

        try:
            body = metrics.exposition()
        except ImproperlyConfigured as error:
            return Response({"error": str(error), "status": 501}, status=501)
        return Response(body, content_type=metrics.CONTENT_TYPE)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        if not isinstance(response.data, bytes):  # an error, in the API's JSON shape
            response.content_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
