"""Metadata: schema, migrations and the queries the services run."""
