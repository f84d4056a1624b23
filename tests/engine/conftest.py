"""Fixtures the engine's batch tests share with the other batch tests."""

from support.batches import mock  # noqa: F401  (the threaded mock order API fixture)
