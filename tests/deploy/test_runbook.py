"""docs/runbooks/deploy.md's commands work as written as far as a machine without a cluster can
tell: its render and generate commands run, and every path, namespace and object it names exists
in the rendered overlays."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy.rendered import ROOT, kubectl, named, render

RUNBOOK = ROOT / "docs" / "runbooks" / "deploy.md"
KINDS = {"deployment": "Deployment", "job": "Job", "hpa": "HorizontalPodAutoscaler", "scaledobject": "ScaledObject", "svc": "Service"}


def commands() -> list[str]:
    """Every shell line of the runbook's ```sh blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```sh\n(.*?)```", RUNBOOK.read_text(), flags=re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def secret_keys(node: Any) -> set[tuple[str, str]]:
    """(secret, key) of every secret key selector (secretKeyRef, urlSecret, routingKey) in a manifest."""
    if isinstance(node, dict):
        if set(node) == {"name", "key"}:
            return {(node["name"], node["key"])}
        return set().union(*(secret_keys(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(secret_keys(v) for v in node)) if node else set()
    return set()


def test_render_and_generate_commands_run(tmp_path: Path) -> None:
    """Each `kubectl kustomize` line renders (output sent to tmp_path) and generate.py runs (as --check, not to rewrite the tree)."""
    ran = 0
    for command in commands():
        words = shlex.split(command)
        if words[:2] == ["kubectl", "kustomize"]:
            done = subprocess.run([kubectl(), "kustomize", words[2]], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0 and "kind: Deployment" in done.stdout, f"{command}: {done.stderr}"
            ran += 1
        elif words[0].endswith("python") and words[1] == "deploy/kubernetes/generate.py":
            done = subprocess.run([sys.executable, words[1], "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, f"{command}: {done.stderr}"
            ran += 1
    assert ran >= 3


def test_named_paths_and_objects_exist() -> None:
    """Every -k path exists; every deployment/job/hpa/scaledobject/svc named is in the overlay; secret keys match the manifests."""
    text = "\n".join(commands())
    for path in re.findall(r"-k (\S+)", text):
        assert (ROOT / path / "kustomization.yaml").exists(), path
    for kind, name in re.findall(r"\b(deployment|job|hpa|scaledobject|svc)[/ ](draftwire-[a-z]+)", text):
        assert named("production", KINDS[kind], name) or named("dev", KINDS[kind], name), f"{kind}/{name} is in no overlay"
    referenced = {pair for overlay in ("dev", "production") for doc in render(overlay) for pair in secret_keys(doc)}
    for secret in ("draftwire-secrets", "draftwire-alerting"):
        keys = {key for name, key in referenced if name == secret}
        created = set()
        for command in commands():
            if f"create secret generic {secret}" in command:
                created |= set(re.findall(r"--from-literal=([\w-]+)=", command))
        assert keys and keys <= created, f"{secret}: the manifests read {sorted(keys - created)}, which the runbook never creates"
