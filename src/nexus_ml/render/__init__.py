"""Files for other systems: Prometheus rules and their promtool tests, Alertmanager,
Grafana dashboards, Kubernetes manifests, and the local monitoring stack's configs.

Run by ``nexus-ml render`` / ``nexus-ml stack`` and the deploy tests; the running
service never imports this package (an import-linter contract says so).
"""
