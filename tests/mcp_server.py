"""A small real MCP server for the tests, on the official SDK's server API.

    python tests/mcp_server.py                     # stdio
    python tests/mcp_server.py --http PORT         # streamable HTTP on 127.0.0.1:PORT/mcp

Tools: ``add(a, b)``, ``shout(text)``, ``fail(message)`` (raises), ``pid()`` (the server's
process id, to see a restart).
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("nbstream-test")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def fail(message: str) -> str:
    """Always fails with the message."""
    raise ValueError(message)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
