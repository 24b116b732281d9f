"""Deployment tooling for the KubeRay manifests in ``k8s/``: render a kustomization, validate the
result against the KubeRay CRD schemas and saerec's own policy, keep the RayService's Serve config
equal to ``serve/config.yaml``. Ray-free; used by ``saerec k8s`` and the tests."""
