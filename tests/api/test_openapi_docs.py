"""/docs describes every endpoint: a written summary, a documented success response, examples on every JSON body,
and a description and an example on every path and query parameter."""

from __future__ import annotations

import re


def _resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def _parameter_examples(param: dict) -> list:
    """Examples on the parameter itself (`example`, OpenAPI `examples`) or in its schema (JSON Schema `examples`)."""
    schema = param.get("schema", {})
    found = [param["example"]] if "example" in param else []
    found += [example["value"] for example in param.get("examples", {}).values() if "value" in example]
    for part in [schema, *schema.get("anyOf", [])]:
        found += part.get("examples", []) + ([part["example"]] if "example" in part else [])
    return found


def _generated_summary(path: str, method: str, operation_id: str) -> str:
    """What FastAPI writes when a route gives no summary: the route's name title-cased (`latest_status` ->
    `Latest Status`). The name is read back from FastAPI's default operationId, `<name><path>_<method>` with
    every non-word character made `_` (`latest_status_status_get`)."""
    suffix = re.sub(r"\W", "_", path) + f"_{method}"
    assert operation_id.endswith(suffix), f"{operation_id}: not FastAPI's default operationId; update this check"
    return operation_id.removesuffix(suffix).replace("_", " ").title()


def test_every_operation_is_documented(client):
    spec = client.get("/openapi.json").json()
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 25
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert op["summary"] != _generated_summary(path, method, op["operationId"]), f"{where}: no summary written"
        for param in op.get("parameters", []):
            name = f"{where}: {param['in']} parameter {param['name']}"
            assert param.get("description", "").strip(), f"{name} without a description"
            examples = _parameter_examples(param)
            assert examples, f"{name} without an example"
            schema = param.get("schema", {})
            for pattern in [p["pattern"] for p in [schema, *schema.get("anyOf", [])] if "pattern" in p]:
                assert all(re.search(pattern, str(e)) for e in examples), f"{name}: an example breaks {pattern}"
        assert any(code.startswith("2") for code in op["responses"]), where
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            schema = body.get("schema", {})
            has_examples = "examples" in body or "example" in body or "examples" in _resolve(spec, schema) or any(
                "examples" in _resolve(spec, s) for s in schema.get("anyOf", []))
            assert has_examples, f"{where}: JSON body without an example"
        if method != "get" or path in ("/", "/health") or path.startswith("/share/"):
            continue
        assert "401" in op["responses"], f"{where}: 401 not documented"


def test_docs_page_and_rules_are_served(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    delete = spec["paths"]["/bookings/{booking_id}"]["delete"]
    assert "recording" in delete["description"] and set(delete["responses"]) >= {"200", "204", "404", "409"}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_open_schema_holds_no_configuration(client, settings, make_settings, tmp_path):
    """/docs, /redoc and /openapi.json need no token, so the schema must be built from the code alone."""
    from services.api.main import create_app

    other = make_settings(data_dir=tmp_path / "elsewhere", camera_id="court9", api_token="another-token-9876543210",
                          mqtt_username="broker-user", mqtt_password="broker-pass-5678",
                          supabase_jwt_secret="jwt-secret-with-at-least-32-characters-0000")
    served = client.get("/openapi.json").text
    assert create_app(other).openapi() == client.get("/openapi.json").json()
    for value in [*settings.secret_values(), *other.secret_values(), str(settings.data_dir), str(tmp_path),
                  "broker-user", "court9"]:
        assert value not in served, value
    assert client.get("/redoc").status_code == 200
