"""Helpers shared by every test layer (imported as ``support.*``: tests/conftest.py puts tests/ on sys.path)."""
