"""Monitoring: reference profiles and drift reports over the decision log."""
