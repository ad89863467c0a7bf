"""The running service minus HTTP: wiring and lifecycle, jobs, serving, and the monitoring views.

Each part takes the collaborators it uses in its constructor; :mod:`.wiring` is the one
place that builds them all and starts and stops them. Nothing here imports FastAPI or
a renderer; errors are the domain errors of :mod:`.errors`, mapped to statuses by the api.
"""
