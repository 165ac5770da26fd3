"""The prediction gateway and REST API."""
