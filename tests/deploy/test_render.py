"""Every overlay renders, every built-in object passes the Kubernetes schemas (strict), and every
custom resource passes its CRD's own OpenAPI schema (tests/deploy/crds/, see its README)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.rendered import OVERLAYS, Loader, kn, render

CRDS = Path(__file__).resolve().parent / "crds"
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
"""The oldest and newest versions deploy/kubernetes/README.md promises (preStop's sleep action
needs 1.30; 1.32 is the kubectl on these machines)."""


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema, made strict."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def strict(schema: Any) -> Any:
    """The API server drops fields a CRD does not declare (pruning) instead of refusing them, so a
    misspelt field would be lost silently; here an undeclared field is an error."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def is_custom(manifest: dict[str, Any]) -> bool:
    return "." in manifest["apiVersion"].split("/")[0] and not manifest["apiVersion"].split("/")[0].endswith("k8s.io")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_role(overlay: str) -> None:
    """kubectl kustomize renders the overlay, with the three roles, their Services and the migrations Job."""
    names = {kn(m) for m in render(overlay)}
    for role in ("api", "gateway", "worker"):
        assert {f"Deployment/draftwire-{role}", f"Service/draftwire-{role}", f"PodDisruptionBudget/draftwire-{role}"} <= names
    assert "Job/draftwire-migrate" in names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_pass_kubernetes_schemas_strictly(overlay: str, version: str) -> None:
    """Each built-in object validates against that Kubernetes version's schema with unknown fields refused."""
    failures = []
    for manifest in render(overlay):
        if is_custom(manifest):
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{kn(manifest)}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not failures, f"Kubernetes {version}:\n" + "\n".join(failures)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_their_crd_schemas(overlay: str) -> None:
    """ServiceMonitor, PrometheusRule, AlertmanagerConfig and ScaledObject validate against the CRDs kept as test data."""
    failures = []
    for manifest in render(overlay):
        if not is_custom(manifest):
            continue
        schema = crd_schemas().get((manifest["apiVersion"], manifest["kind"]))
        if schema is None:
            failures.append(f"{kn(manifest)}: no CRD for {manifest['apiVersion']} in tests/deploy/crds/")
            continue
        for error in jsonschema.Draft7Validator(schema).iter_errors(manifest):
            failures.append(f"{kn(manifest)}: {error.message} at {'/'.join(map(str, error.absolute_path))}")
    assert not failures, "\n".join(failures)


def test_production_uses_every_custom_resource_kind() -> None:
    """The production overlay carries the monitoring and KEDA components (so the CRD test above covers them)."""
    kinds = {m["kind"] for m in render("production") if is_custom(m)}
    assert kinds == {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig", "ScaledObject"}


def test_strict_crd_schema_refuses_a_misspelt_field() -> None:
    """The strict CRD check can fail: a ServiceMonitor endpoint with `intervall` is refused."""
    monitor = next(m for m in render("production") if m["kind"] == "ServiceMonitor")
    bad = {**monitor, "spec": {**monitor["spec"], "endpoints": [{"port": "http", "intervall": "15s"}]}}
    schema = crd_schemas()[(bad["apiVersion"], bad["kind"])]
    assert any("intervall" in e.message for e in jsonschema.Draft7Validator(schema).iter_errors(bad))
