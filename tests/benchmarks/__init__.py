"""Comparisons run by hand (python -m tests.benchmarks.NAME), not collected by pytest."""
