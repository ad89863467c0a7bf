"""Alembic environment and revisions for the Nexus ML schema."""
