"""Loads the project's MCP server code from ``backend/mcp/``.

The directory is named ``mcp/`` (the layout the spec asks for) but it is NOT a
Python package: a local package called ``mcp`` would shadow the official ``mcp``
SDK from PyPI that the server code itself imports. So ``mcp/`` has no
``__init__.py`` (a plain directory never wins over an installed regular package)
and holds the package ``todo_mcp``. This module appends that directory to the
END of ``sys.path``, so nothing in it can shadow an installed distribution,
and imports ``todo_mcp`` by its own name.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

MCP_SOURCE_DIR = Path(__file__).resolve().parent.parent / "mcp"


def load_todo_mcp() -> ModuleType:
    """Import and return the ``todo_mcp`` package that lives in ``backend/mcp/``."""
    path = str(MCP_SOURCE_DIR)
    if path not in sys.path:
        sys.path.append(path)
    return importlib.import_module("todo_mcp")
