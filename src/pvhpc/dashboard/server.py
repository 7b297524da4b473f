"""The dashboard's web server (aiohttp), in a thread of its own.

Routes: ``/`` the page; ``/static/…`` its scripts and styles (all shipped in the
package: the page needs no internet); ``/ws`` a WebSocket that pushes every new
snapshot, the thumbnails' arrival and, on connect, the charts' history;
``/api/snapshot`` and ``/api/history`` the same as JSON; ``/api/thumbnail.png``
the latest thumbnail of a channel; ``POST /api/control`` and ``POST
/api/stop-all`` the control actions, which need the token
(:mod:`pvhpc.dashboard.access`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from typing import Any

from aiohttp import WSMsgType, web

from .access import TOKEN_HEADER, Access
from .board import Board
from .control import Controller
from .thumbnails import Thumbnail, Thumbnails

__all__ = ["DashboardServer", "STATIC_DIR"]

logger = logging.getLogger("pvhpc.dashboard")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class DashboardServer:
    """Serves one board. :meth:`start` returns once it listens; :meth:`stop` ends it.

    Every handler runs in the server's event-loop thread; blocking work (a control
    command waits for the stage's answer) goes to worker threads.
    """

    def __init__(
        self,
        board: Board,
        controller: Controller,
        access: Access,
        host: str,
        port: int,
        thumbnail_period: float = 1.0,
    ):
        self.board = board
        self.controller = controller
        self.access = access
        self.host = host
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[web.WebSocketResponse, str | None] = {}
        self._sending: set[asyncio.Task] = set()  # the loop keeps only weak references
        self._watch_lock = threading.Lock()
        self._watching: dict[int, str] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)
        self._stopped: asyncio.Event | None = None
        self.thumbnails = Thumbnails(self._watched, self._on_thumbnail, thumbnail_period)
        board.listen(self._on_snapshot)

    # -- life --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        """Start listening; returns the page's URL. Raises OSError if the address
        cannot be bound (in use, not this host's)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise OSError(f"the dashboard did not start listening within {timeout:g} s")
        if self._error is not None:
            raise self._error
        self.thumbnails.start()
        return self.url

    def stop(self) -> None:
        self.thumbnails.stop()
        loop = self._loop
        if loop is not None and self._stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=1.0)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        port = runner.addresses[0][1] if runner.addresses else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.port = port
        self.url = f"http://{host}:{port}/"
        self._ready.set()
        await self._stopped.wait()
        # Every page gets the last snapshot (a run's summary) before the socket closes.
        last = json.dumps({"type": "snapshot", "snapshot": self.board.snapshot(), "last": True})
        for ws in list(self._sockets):
            await self._send(ws, last)
            await ws.close()
        await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC_DIR, show_index=False)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/api/snapshot", self._snapshot)
        app.router.add_get("/api/history", self._history)
        app.router.add_get("/api/thumbnail.png", self._thumbnail)
        app.router.add_post("/api/control", self._control)
        app.router.add_post("/api/stop-all", self._stop_all)
        return app

    # -- pushing -----------------------------------------------------------------------

    def _watched(self) -> set[str]:
        with self._watch_lock:
            return set(self._watching.values())

    def _push(self, text: str, channel: str | None = None) -> None:
        # Event-loop thread. ``channel``: only to the pages watching it.
        for ws, watching in list(self._sockets.items()):
            if ws.closed or (channel is not None and watching != channel):
                continue
            task = asyncio.ensure_future(self._send(ws, text))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _send(ws: web.WebSocketResponse, text: str) -> None:
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the page went away; its socket is dropped when its handler ends

    def _on_snapshot(self, snapshot: dict) -> None:
        # The publishing thread: hand over to the event loop.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        text = json.dumps({"type": "snapshot", "snapshot": snapshot})
        try:
            loop.call_soon_threadsafe(self._push, text)
        except RuntimeError:
            pass  # the loop is closing

    def _on_thumbnail(self, thumb: Thumbnail) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        text = json.dumps({"type": "thumbnail", "thumbnail": thumb.meta()})
        try:
            loop.call_soon_threadsafe(self._push, text, thumb.channel)
        except RuntimeError:
            pass

    # -- handlers ----------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            os.path.join(STATIC_DIR, "index.html"), headers={"Cache-Control": "no-store"}
        )

    def _hello(self) -> dict:
        return {
            "type": "hello",
            "readOnly": self.access.read_only,
            "history": self.board.history(),
            "snapshot": self.board.snapshot(),
            "thumbnailPeriod": self.thumbnails.period,
        }

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self._sockets[ws] = None
        try:
            await ws.send_str(json.dumps(self._hello()))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("type") == "watch":
                    channel = str(data.get("channel") or "").strip() or None
                    self._sockets[ws] = channel
                    with self._watch_lock:
                        if channel:
                            self._watching[id(ws)] = channel
                        else:
                            self._watching.pop(id(ws), None)
                    latest = self.thumbnails.latest(channel) if channel else None
                    if latest is not None:
                        await ws.send_str(
                            json.dumps({"type": "thumbnail", "thumbnail": latest.meta()})
                        )
        finally:
            self._sockets.pop(ws, None)
            with self._watch_lock:
                self._watching.pop(id(ws), None)
        return ws

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.board.snapshot())

    async def _history(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.board.history())

    async def _thumbnail(self, request: web.Request) -> web.StreamResponse:
        channel = request.query.get("channel", "").strip()
        if not channel:
            return web.json_response({"error": "give ?channel=NAME"}, status=400)
        self.thumbnails.ask(channel)
        thumb = self.thumbnails.latest(channel)
        if thumb is None or not thumb.png:
            reason = thumb.error if thumb is not None else "no thumbnail yet"
            return web.json_response({"error": reason}, status=404)
        return web.Response(
            body=thumb.png,
            content_type="image/png",
            headers={"Cache-Control": "no-store", "X-Unique-Id": str(thumb.unique_id)},
        )

    async def _authorized(self, request: web.Request) -> tuple[dict | None, web.Response | None]:
        who = request.remote or "?"
        refusal = self.access.refusal(request.headers.get(TOKEN_HEADER))
        if refusal is not None:
            logger.warning("control action from %s %s", who, refusal)
            return None, web.json_response({"ok": False, "message": refusal}, status=403)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            body = {}
        return body, None

    async def _control(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._authorized(request)
        if refused is not None:
            return refused
        assert body is not None
        answer = await asyncio.to_thread(
            self.controller.command,
            str(body.get("key", "")),
            str(body.get("command", "")),
            _text(body.get("args")),
            request.remote or "",
        )
        return web.json_response(answer)

    async def _stop_all(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._authorized(request)
        if refused is not None:
            return refused
        answer = await asyncio.to_thread(self.controller.stop_all, request.remote or "")
        return web.json_response(answer)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)
