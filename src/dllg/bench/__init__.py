"""Benchmarks: scripts that print figures (`key=value` lines), never timed tests."""
