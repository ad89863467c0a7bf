"""Statistics of model quality: drift, data quality, performance and its estimation.

Arrays and plain dicts in, numbers out: no Prometheus, no database, no model code, so
the service's quality job, the CLI and the benchmarks compute exactly the same thing.
"""
