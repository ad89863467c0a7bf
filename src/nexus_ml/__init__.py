"""Nexus ML: diagnostic model service with Prometheus-native monitoring."""

__version__ = "0.1.0"
