"""Benchmarks: each endpoint against the raw SQL that answers the same question (see README.md)."""
