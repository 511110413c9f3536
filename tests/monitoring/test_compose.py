"""compose/compose.yaml: valid against the Compose schema, every file it uses exists, wired right."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from . import stack

APP_SERVICES = ("migrate", "api-1", "api-2", "gateway-1", "gateway-2", "worker-1", "worker-2")
NO_HEALTHCHECK = {
    "migrate": "one-shot; dependants wait for service_completed_successfully",
    "otel-collector": "distroless image, nothing to run a probe with",
    "tempo": "distroless image, nothing to run a probe with",
}


def _compose() -> dict[str, Any]:
    return dict(stack.load_yaml(stack.COMPOSE_FILE))


def _services() -> dict[str, dict[str, Any]]:
    return dict(_compose()["services"])


def test_compose_validates_against_the_compose_schema() -> None:
    """compose.yaml parses and validates against the Compose Specification's JSON schema."""
    schema = json.loads(stack.COMPOSE_SCHEMA.read_text())
    # Draft 7 named explicitly: the schema's $schema URL is a spelling jsonschema does not know.
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(_compose())


def _bind_sources() -> list[tuple[str, Path]]:
    """(service, host path) of every bind mount, relative paths resolved from compose/."""
    found = []
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                found.append((name, (stack.COMPOSE_DIR / source).resolve()))
    return found


@pytest.mark.parametrize(("service", "path"), _bind_sources(), ids=lambda v: str(v))
def test_every_bind_mount_exists(service: str, path: Path) -> None:
    """Every file or folder compose mounts into a container exists in the repository."""
    assert path.exists(), f"{service} mounts {path}, which does not exist"


def test_build_context_dockerfile_and_copied_files_exist() -> None:
    """The app's build context and Dockerfile exist, and so does every source the Dockerfile COPYs."""
    builds = {json.dumps(s["build"], sort_keys=True) for s in _services().values() if "build" in s}
    assert len(builds) == 1, "one image for api, worker and migrate"
    build = json.loads(builds.pop())
    context = (stack.COMPOSE_DIR / build["context"]).resolve()
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"^\s*(?:COPY|ADD)\s+(?!--from)(.+)$", line)
        if match:
            *sources, _ = match.group(1).split()
            for source in sources:
                assert (context / source).exists(), f"Dockerfile copies {source}, missing from {context}"


def test_other_referenced_files_exist() -> None:
    """Secrets and env files named by compose exist (the PagerDuty key comes from the environment)."""
    compose = _compose()
    for secret in compose.get("secrets", {}).values():
        assert ("file" in secret and (stack.COMPOSE_DIR / secret["file"]).exists()) or "environment" in secret
    for service in compose["services"].values():
        for env_file in service.get("env_file", []):
            assert (stack.COMPOSE_DIR / env_file).exists()


def test_the_whole_stack_is_there() -> None:
    """Postgres 15, Redis, migrate, two APIs, two gateways, two workers, the edge proxy and the
    monitoring services are defined."""
    services = _services()
    assert set(services) >= {
        "postgres",
        "redis",
        *APP_SERVICES,
        "edge",
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "tempo",
    }
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_redis_keeps_an_append_only_file() -> None:
    """Redis runs with AOF on, so pending autosaves survive a restart."""
    command = _services()["redis"]["command"]
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


def test_app_processes_run_draftwire_with_env_by_name() -> None:
    """migrate/api/worker run `draftwire migrate|api|worker` from the one image, with the contract's
    variables; JWT_SECRET has no default."""
    services = _services()
    for name in APP_SERVICES:
        service = services[name]
        assert service["command"] == [name.split("-")[0]]
        env = service["environment"]
        for variable in (
            "DATABASE_URL",
            "REDIS_URL",
            "JWT_SECRET",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ):
            assert env.get(variable), f"{name} lacks {variable}"
        assert env["JWT_SECRET"].startswith("${JWT_SECRET:?")
    assert services["migrate"]["restart"] == "no"
    dockerfile = (stack.REPO / "Dockerfile").read_text()
    assert "python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["draftwire"]' in dockerfile


def test_dependencies_wait_for_health_or_completion() -> None:
    """App processes start after migrate succeeded and Redis is healthy; every service_healthy
    condition names a service that has a healthcheck."""
    services = _services()
    for name in ("api-1", "api-2", "gateway-1", "gateway-2", "worker-1", "worker-2"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_long_running_services_have_healthchecks_and_limits() -> None:
    """Every service has a healthcheck unless it cannot (listed with the reason), and a memory limit."""
    for name, service in _services().items():
        if name not in NO_HEALTHCHECK:
            assert "healthcheck" in service, name
        if name != "migrate":
            assert service["deploy"]["resources"]["limits"]["memory"], name


def test_prometheus_scrapes_each_api_gateway_and_worker_service() -> None:
    """Prometheus' draftwire-api, draftwire-gateway and draftwire-worker jobs list exactly the
    compose api-*, gateway-* and worker-* services, each on its own port, and compose turns on
    exemplar storage."""
    services = _services()
    config = stack.load_yaml(stack.PROMETHEUS_CONFIG)
    jobs = {
        j["job_name"]: {t for sc in j["static_configs"] for t in sc["targets"]}
        for j in config["scrape_configs"]
    }
    assert jobs["draftwire-api"] == {f"{s}:8080" for s in services if s.startswith("api-")}
    assert jobs["draftwire-worker"] == {f"{s}:9091" for s in services if s.startswith("worker-")}
    assert jobs["draftwire-gateway"] == {f"{s}:8080" for s in services if s.startswith("gateway-")}
    prometheus = services["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert "../alerts:/etc/prometheus/rules:ro" in prometheus["volumes"]
    assert config["rule_files"] == ["rules/*.rules.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_backups_live_in_a_volume_on_the_workers() -> None:
    """The workers (which run the 02:00 UTC pg_dump on the maintenance queue) mount the backups
    volume at BACKUP_DIR."""
    compose = _compose()
    assert "backups" in compose["volumes"]
    for name in ("worker-1", "worker-2"):
        service = compose["services"][name]
        directory = service["environment"]["BACKUP_DIR"]
        assert f"backups:{directory}" in service["volumes"]


def test_collector_sends_traces_to_tempo() -> None:
    """The OTel Collector receives OTLP and exports traces to Tempo, which listens for OTLP."""
    collector = stack.load_yaml(stack.COMPOSE_DIR / "otel-collector" / "config.yaml")
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    (exporter,) = pipeline["exporters"]
    assert collector["exporters"][exporter]["endpoint"] == "tempo:4317"
    tempo = stack.load_yaml(stack.COMPOSE_DIR / "tempo" / "tempo.yaml")
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    api_env = _services()["api-1"]["environment"]
    assert "otel-collector:4318" in api_env["OTEL_EXPORTER_OTLP_ENDPOINT"]


def _nginx_blocks(text: str, keyword: str) -> dict[str, str]:
    """``name -> body`` of each ``keyword name { ... }`` block (no nested braces inside)."""
    return {m.group(1): m.group(2) for m in re.finditer(keyword + r"\s+(\S+)\s*\{([^{}]*)\}", text)}


def test_edge_routes_streams_to_gateways_and_the_rest_to_apis() -> None:
    """The edge proxy is the one origin: /ws (with the Upgrade headers) and /api/events (unbuffered)
    go to exactly the gateway-* services, everything else to exactly the api-* services; the
    gateways allow that origin."""
    services = _services()
    edge = services["edge"]
    (mount,) = edge["volumes"]
    conf = (stack.COMPOSE_DIR / mount.split(":", 1)[0]).read_text()
    conf = re.sub(r"#[^\n]*", "", conf)
    upstreams = _nginx_blocks(conf, "upstream")
    servers = {name: set(re.findall(r"server\s+(\S+?)(?:\s|;)", body)) for name, body in upstreams.items()}
    assert servers["draftwire_gateway"] == {f"{s}:8080" for s in services if s.startswith("gateway-")}
    assert servers["draftwire_api"] == {f"{s}:8080" for s in services if s.startswith("api-")}
    locations = _nginx_blocks(conf, "location =") | _nginx_blocks(conf, "location")
    assert "proxy_pass http://draftwire_gateway;" in locations["/ws"]
    assert "proxy_set_header Upgrade $http_upgrade;" in locations["/ws"]
    assert "proxy_pass http://draftwire_gateway;" in locations["/api/events"]
    assert "proxy_buffering off;" in locations["/api/events"]
    assert "proxy_pass http://draftwire_api;" in locations["/"]
    listen = re.search(r"listen\s+(\d+);", conf)
    assert listen is not None and edge["ports"] == [f"{listen.group(1)}:{listen.group(1)}"]
    for name in ("gateway-1", "gateway-2"):
        assert services[name]["command"] == ["gateway"]
        assert f"localhost:{listen.group(1)}" in services[name]["environment"]["REALTIME_ALLOWED_ORIGINS"]
        assert edge["depends_on"][name]["condition"] == "service_healthy"
