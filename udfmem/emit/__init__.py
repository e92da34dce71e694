"""Emitting: the emitter and the sinks it writes to, built from settings in one place."""
