"""Host resources: CPU, memory and disk of the machine a service instance runs on.

``max by (job, instance)``: several workers on one host give one alert per host.
"""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import gauge_cases
from nexus_ml.monitoring.alerts.definition import Alert, Found, host, num, when
from nexus_ml.monitoring.alerts.snapshot import Measurements
from nexus_ml.thresholds import Thresholds

CPU = "ml_system_cpu_usage_percent"


def _cpu_expr(j: str, limit: float) -> str:
    return f"max by (job, instance) ({CPU}{{{j}}}) > {num(limit)}"


def _cpu_above(limit: float, m: Measurements, instance: str) -> Found:
    cpu = m.cpu_percent
    return when(cpu is not None and cpu > limit, host(instance), cpu)


CRITICAL_CPU = Alert(
    name="CriticalCPUUsage",
    severity="critical",
    category="resources",
    threshold="cpu_usage_critical",
    for_key="cpu_usage_critical_for",
    summary="CPU critically high on {instance}",
    description="CPU usage on {instance} is {value}% (threshold {threshold}%).",
    labels=("instance",),
    expr=lambda t, j: _cpu_expr(j, t.cpu_usage_critical),
    condition=lambda m, t, instance: _cpu_above(t.cpu_usage_critical, m, instance),
    cases=lambda t, for_m: gauge_cases(CPU, t.cpu_usage_critical, 0.5, for_m),
)

HIGH_CPU = Alert(
    name="HighCPUUsage",
    severity="warning",
    category="resources",
    threshold="cpu_usage_high",
    for_key="cpu_usage_high_for",
    summary="CPU high on {instance}",
    description="CPU usage on {instance} is {value}% (threshold {threshold}%).",
    labels=("instance",),
    expr=lambda t, j: _cpu_expr(j, t.cpu_usage_high),
    condition=lambda m, t, instance: _cpu_above(t.cpu_usage_high, m, instance),
    cases=lambda t, for_m: gauge_cases(CPU, t.cpu_usage_high, 0.5, for_m),
)


def _memory_expr(t: Thresholds, j: str) -> str:
    ratio = f"max by (job, instance) (ml_system_memory_usage_ratio{{{j}}}) * 100"
    expr = f"{ratio} > {num(t.memory_usage_high)}"
    if t.memory_usage_high_bytes is not None:
        # Optional absolute ceiling; the value shown stays the percentage.
        expr += (
            f"\nor\n({ratio}\n  and on (job, instance)\n"
            f"  max by (job, instance) (ml_system_memory_usage_bytes{{{j}}}) > "
            f"{num(t.memory_usage_high_bytes)})"
        )
    return expr


def _memory_high(m: Measurements, t: Thresholds, instance: str) -> Found:
    pct = None if m.memory_ratio is None else m.memory_ratio * 100
    ceiling = t.memory_usage_high_bytes
    bytes_high = ceiling is not None and m.memory_bytes is not None and m.memory_bytes > ceiling
    return when(pct is not None and (pct > t.memory_usage_high or bytes_high), host(instance), pct)


HIGH_MEMORY = Alert(
    name="HighMemoryUsage",
    severity="warning",
    category="resources",
    threshold="memory_usage_high",
    for_key="memory_usage_high_for",
    summary="Memory high on {instance}",
    description="Memory in use on {instance} is {value}% of total (threshold {threshold}%).",
    labels=("instance",),
    expr=_memory_expr,
    condition=_memory_high,
    cases=lambda t, for_m: gauge_cases(
        "ml_system_memory_usage_ratio", t.memory_usage_high, 0.5, for_m, scale=100
    ),
)


def _disk_high(m: Measurements, t: Thresholds, instance: str) -> Found:
    pct = None if m.disk_ratio is None else m.disk_ratio * 100
    return when(pct is not None and pct > t.disk_usage_high, host(instance), pct)


HIGH_DISK = Alert(
    name="HighDiskUsage",
    severity="warning",
    category="resources",
    threshold="disk_usage_high",
    for_key="disk_usage_high_for",
    summary="Disk filling on {instance}",
    description="The data filesystem on {instance} is {value}% full (threshold {threshold}%).",
    labels=("instance",),
    expr=lambda t, j: (
        "max by (job, instance) (ml_system_disk_usage_ratio"
        f"{{{j}}}) * 100 > {num(t.disk_usage_high)}"
    ),
    condition=_disk_high,
    cases=lambda t, for_m: gauge_cases(
        "ml_system_disk_usage_ratio", t.disk_usage_high, 0.5, for_m, scale=100
    ),
)
