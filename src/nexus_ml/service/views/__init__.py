"""What the monitoring endpoints answer, computed from the store, the models and the metrics.

Each view takes its collaborators in its constructor and returns the typed results of
:mod:`.results` and :mod:`.ops_results` (pydantic models: the api serves them as they are,
and OpenAPI documents them).
"""
