"""deploy/kubernetes rendered and checked without a cluster: kustomize renders, schemas,
generated monitoring manifests, and the invariants a reviewer would otherwise check by eye."""
