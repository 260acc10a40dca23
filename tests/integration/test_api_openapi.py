"""The OpenAPI schema the app serves: valid OpenAPI 3, every endpoint, its mount point."""

from __future__ import annotations

from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema


def test_the_schema_is_valid_openapi_and_lists_every_endpoint(client: Client) -> None:
    GENERATOR_STATS.reset()
    response = client.get("/inngest/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert not GENERATOR_STATS, "drf-spectacular reported warnings or errors"
    assert schema["servers"] == [{"url": "/inngest/"}]
    assert {path: sorted(item) for path, item in schema["paths"].items()} == {
        "/e/{event_key}": ["post"],
        "/v1/events/{event_id}": ["get"],
        "/v1/events/{event_id}/runs": ["get"],
        "/v1/runs/{run_id}": ["delete", "get"],
        "/v1/runs/{run_id}/rerun": ["post"],
        "/v1/cancellations": ["get", "post"],
        "/v1/replays": ["post"],
        "/v1/functions": ["get"],
        "/v1/apps/{app_id}/functions": ["get"],
    }
    assert schema["components"]["securitySchemes"]["signingKey"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/e/{event_key}"]["post"]  # the key is in the path
    assert {"signingKey": []} in schema["paths"]["/v1/runs/{run_id}"]["get"]["security"]
