"""Catalog ingestion jobs. They talk to the service over HTTP, like any other client."""
