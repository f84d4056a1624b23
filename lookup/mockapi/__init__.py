"""The bundled mock order API: the demo's and the tests' order server, with every fault the
engine must survive (``python -m lookup.mockapi`` or ``lookup mock-api``), and the
PostgreSQL seeder (:mod:`lookup.mockapi.pgseed`). It never imports the engine."""

from lookup.mockapi.cli import main
from lookup.mockapi.server import MockOrderServer

__all__ = ["MockOrderServer", "main"]
