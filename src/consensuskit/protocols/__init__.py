"""Protocols as deterministic, I/O-free state machines (see docs/architecture.md)."""
