"""A TCP proxy on 127.0.0.1 in front of PostgreSQL that can lose a reply: the "did it commit?"
fault. Armed with a marker, it forwards the first client message that contains it, waits for
the server's answer (so the statement has run, and in autocommit has committed), and then
closes both sides without passing the answer on. Everything else is relayed unchanged.

It runs its own event loop on a thread, so a test can arm it while workers talk through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ReplyCuttingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cuts = 0
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reply-cutting-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> int:
        self._thread.start()
        self._ready.wait(10)
        return self.port

    def arm(self, marker: bytes) -> None:
        """Cut the reply to the next client message containing `marker` (once)."""
        with self._lock:
            self._marker = marker

    @property
    def armed(self) -> bool:
        with self._lock:
            return self._marker is not None

    def stop(self) -> None:
        """Close every connection (the server's sessions end with them) and the listener."""
        self._loop.call_soon_threadsafe(self._close_all)
        self._thread.join(10)

    def _close_all(self) -> None:
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.close()
        if self._server is not None:
            self._server.close()
        self._loop.call_later(0.2, self._loop.stop)

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def _take_marker(self, seen: bytes) -> bool:
        with self._lock:
            if self._marker is not None and self._marker in seen:
                self._marker = None
                self.cuts += 1
                return True
        return False

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_out.close()
            return
        self._writers |= {client_out, server_out}
        cut = asyncio.Event()

        async def to_server() -> None:
            tail = b""
            while not cut.is_set():
                chunk = await client_in.read(65536)
                if not chunk:
                    break
                seen, tail = tail + chunk, chunk[-256:]
                if self._take_marker(seen):
                    cut.set()  # the server's next bytes are its answer to this message
                server_out.write(chunk)
                await server_out.drain()

        async def to_client() -> None:
            while True:
                chunk = await server_in.read(65536)
                if not chunk:
                    break
                if cut.is_set():
                    break  # the server answered (and committed): the client never hears it
                client_out.write(chunk)
                await client_out.drain()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if cut.is_set():  # wait for the answer before cutting
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tasks[1], timeout=10)
        for task in tasks:
            task.cancel()
        for writer in (client_out, server_out):
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
