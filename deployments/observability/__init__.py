"""Metrics, traces and request logs of the serving path (issue 7)."""
