"""Probes: what this process holds and where; they return readings, never emit."""
