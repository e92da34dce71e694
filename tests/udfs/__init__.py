"""Importable UDF classes for tests that pickle by reference."""
