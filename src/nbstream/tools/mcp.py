"""MCP servers as tool sources, with the official ``mcp`` SDK (``pip install 'nbstream[mcp]'``).

Servers are declared in the standard ``mcpServers`` JSON that other MCP clients read, in the
file the ``mcp_config`` option names (``--mcp-config``, ``%config LLMMagics.mcp_config``,
``$NBSTREAM_MCP_CONFIG``)::

    {"mcpServers": {
        "files": {"command": "python", "args": ["-m", "my_server"], "env": {"ROOT": "."}},
        "search": {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "…"}}}}

``--tools mcp:files`` offers every tool of a server, ``mcp:files/read`` one of them (mixed
with your functions: ``--tools load_sales,mcp:files``). A server starts once per kernel on its
first use (stdio: a subprocess; ``url``: streamable HTTP), on a thread of its own that keeps
the session open, and is closed at exit. A server that died or does not answer gives a clear
error and starts again on the next use. Its tools go through the same approval as your
functions; their arguments are checked against the server's JSON schema before a call.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbstream.providers.common import one_line, redact
from nbstream.tools.definition import Tool, ToolError

__all__ = ["MCP_PREFIX", "McpServer", "close_all", "mcp_tools"]

MCP_PREFIX = "mcp:"
START_TIMEOUT = 20.0
"""Seconds a server has to start and answer ``initialize`` and ``tools/list``."""
CALL_TIMEOUT = 300.0
"""Seconds a tool call may take before it is an error."""
INSTALL_HINT = "MCP servers need the SDK: pip install 'nbstream[mcp]' (then restart the kernel)"

_servers: dict[tuple[str, str], McpServer] = {}
_lock = threading.Lock()


class McpServer:
    """One declared server: its session lives on a thread of its own until :meth:`close`."""

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        self.name = name
        self.spec = dict(spec)
        self.tools: list[Tool] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"nbstream-mcp-{name}", daemon=True
        )
        self._session: Any = None
        self._stop: asyncio.Event | None = None
        self._done: concurrent.futures.Future[None] | None = None
        self.error: str | None = None

    @property
    def alive(self) -> bool:
        return self._session is not None and self._done is not None and not self._done.done()

    def start(self) -> None:
        """Start the server and list its tools; :class:`ToolError` saying why it failed."""
        self._thread.start()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
        try:
            ready.result(timeout=START_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self.close()
            raise ToolError(
                f"the MCP server {self.name!r} did not answer within {START_TIMEOUT:g} s "
                "(is its command or URL right?)"
            ) from None
        except ToolError:
            self.close()
            raise

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            from mcp import ClientSession
        except ImportError:
            ready.set_exception(ToolError(INSTALL_HINT))
            return
        self._stop = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                listed = await session.list_tools()
                self.tools = [self._tool(t) for t in listed.tools]
                self._session = session
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            self.error = _words(exc)
            if not ready.done():
                ready.set_exception(
                    ToolError(f"the MCP server {self.name!r} could not start: {self.error}")
                )
        finally:
            self._session = None

    def _transport(self) -> Any:
        if "url" in self.spec:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(str(self.spec["url"]))
        if "command" not in self.spec:
            raise ToolError(f"the MCP server {self.name!r} has neither 'command' nor 'url'")
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=str(self.spec["command"]),
            args=[str(a) for a in self.spec.get("args") or []],
            env={**os.environ, **{k: str(v) for k, v in (self.spec.get("env") or {}).items()}},
            cwd=self.spec.get("cwd"),
        )
        return stdio_client(params, errlog=open(os.devnull, "w"))

    def _tool(self, listed: Any) -> Tool:
        schema = dict(getattr(listed, "input_schema", None) or {"type": "object"})
        schema.pop("title", None)
        schema.setdefault("properties", {})
        name = str(listed.name)

        async def call(**arguments: Any) -> str:
            return await self.call(name, arguments)

        call.__name__ = name
        return Tool(
            name=name,
            description=str(listed.description or ""),
            parameters=schema,
            function=call,
            approve=True,
            model=None,  # checked against the JSON schema instead
        )

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool`` on the server (from any loop): its text content, or an error."""
        if not self.alive:
            raise ToolError(
                f"the MCP server {self.name!r} has stopped ({self.error or 'no reason given'}); "
                "it starts again on the next use"
            )
        session = self._session
        future = asyncio.run_coroutine_threadsafe(
            session.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT), self._loop
        )
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:  # the session broke (the server died, a timeout …)
            self.error = _words(exc)
            self._session = None  # not alive: the next use starts it again
            if self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            raise ToolError(
                f"the MCP server {self.name!r} failed: {self.error}; it starts again on the "
                "next use"
            ) from None
        text = "\n".join(
            str(getattr(c, "text", "")) for c in getattr(result, "content", None) or []
        )
        if getattr(result, "is_error", False):
            raise ToolError(text or f"{tool} failed on the MCP server {self.name!r}")
        return text

    def close(self) -> None:
        stop = self._stop
        if stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(stop.set)
        if self._done is not None:
            with contextlib.suppress(Exception):
                self._done.result(timeout=5)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._session = None


def _words(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)  # an ExceptionGroup (anyio's task groups)
    if isinstance(inner, (list, tuple)) and inner:
        return _words(inner[0])
    return redact(one_line(f"{type(exc).__name__}: {exc}", 200))


def servers_in(config: str) -> dict[str, dict[str, Any]]:
    """The ``mcpServers`` of the JSON file ``config``; :class:`ToolError` saying what is
    wrong with it."""
    path = Path(config).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolError(f"cannot read the MCP config {str(path)!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ToolError(f"the MCP config {str(path)!r} is not valid JSON: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not all(isinstance(v, dict) for v in servers.values()):
        raise ToolError(
            f"the MCP config {str(path)!r} needs an 'mcpServers' object of servers "
            '({"mcpServers": {"name": {"command": …} or {"url": …}}})'
        )
    return servers


def mcp_tools(item: str, config: str | None) -> list[Tool]:
    """The tools ``mcp:NAME`` (all of them) or ``mcp:NAME/tool`` names, starting the server
    on first use (and again if it stopped)."""
    if not config:
        raise ToolError(
            f"{item!r} names an MCP server but no MCP config is set: point the mcp_config "
            "option (--mcp-config, %config LLMMagics.mcp_config) at an mcpServers JSON file"
        )
    name, _, wanted = item[len(MCP_PREFIX) :].partition("/")
    servers = servers_in(config)
    if name not in servers:
        known = ", ".join(sorted(servers)) or "none"
        raise ToolError(f"no MCP server {name!r} in {config} (servers: {known})")
    key = (str(Path(config).expanduser().resolve()), name)
    with _lock:
        server = _servers.get(key)
        if server is None or not server.alive:
            if server is not None:
                server.close()
            server = McpServer(name, servers[name])
            server.start()
            _servers[key] = server
    if not wanted:
        return list(server.tools)
    found = [t for t in server.tools if t.name == wanted]
    if not found:
        names = ", ".join(t.name for t in server.tools) or "none"
        raise ToolError(f"the MCP server {name!r} has no tool {wanted!r} (tools: {names})")
    return found


def close_all() -> None:
    """Close every MCP server this process started (at exit)."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.close()


atexit.register(close_all)
