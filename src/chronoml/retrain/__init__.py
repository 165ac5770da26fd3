"""Retraining: per-endpoint configuration, durable jobs, and the runner that
takes a job from fresh data to a promoted (or rolled back) challenger."""
