"""Render the kustomize overlays once per session (``kubectl kustomize``) and look things up in them."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
WORKLOAD_KINDS = {"Deployment", "Job"}

Manifest = dict[str, Any]


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """kubectl prints a bare ``=`` (an AlertmanagerConfig matchType), which YAML 1.1 resolves to
    the obscure ``!!value`` tag PyYAML cannot construct; it is the string "=" here."""


Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl (with its built-in kustomize) is needed: install kubectl >= 1.27 (deploy/kubernetes/README.md)"
    return found


@functools.cache
def render(overlay: str) -> tuple[Manifest, ...]:
    """Every object ``kubectl kustomize overlays/<overlay>`` prints."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.load_all(done.stdout, Loader=Loader) if doc)


def named(overlay: str, kind: str, name: str) -> Manifest | None:
    return next((m for m in render(overlay) if m["kind"] == kind and m["metadata"]["name"] == name), None)


def of_kind(overlay: str, *kinds: str) -> list[Manifest]:
    return [m for m in render(overlay) if m["kind"] in kinds]


def pod_spec(workload: Manifest) -> Manifest:
    return workload["spec"]["template"]["spec"]


def containers(overlay: str) -> Iterator[tuple[Manifest, Manifest]]:
    """(workload, container) for every container of every Deployment and Job."""
    for workload in of_kind(overlay, *WORKLOAD_KINDS):
        for container in pod_spec(workload)["containers"]:
            yield workload, container


def ours(workload: Manifest) -> bool:
    """A Draftwire process (api, gateway, worker, migrate), not the dev overlay's Postgres or Redis."""
    return workload["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "draftwire"


def kn(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"
