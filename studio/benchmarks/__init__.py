"""Benchmark commands that print measured figures."""
