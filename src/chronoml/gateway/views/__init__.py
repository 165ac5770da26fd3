"""The REST views beyond predict: explanations, monitoring, alerts, the loop, the dashboard."""
