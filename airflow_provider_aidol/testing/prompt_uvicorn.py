"""uvicorn's server, stopped without its fixed waits (the embedded server stops once per test)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    import socket

_logger = logging.getLogger("uvicorn.error")
_TICK_SECONDS = 0.1  # uvicorn's: the Date header and the request limit are checked this often
_POLL_SECONDS = 0.005


class PromptUvicorn(uvicorn.Server):
    """A ``uvicorn.Server`` whose stop takes as long as its connections take to close.

    uvicorn looks at ``should_exit`` every 0.1 s, then sleeps 0.1 s before it waits for open
    connections in 0.1 s steps: about 0.2 s for every stop, paid once per test by a suite that
    starts a fresh server for each. Here ``request_exit()`` wakes the main loop at once, and the
    shutdown waits in 5 ms steps. What a stop does is uvicorn's (uvicorn 0.35 to 0.54 alike):
    listening ends, idle connections close, answers in progress get ``timeout_graceful_shutdown``
    seconds to finish and are cancelled after that, then the lifespan ends.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_exit(self) -> None:
        """Ask the server to stop, from any thread; it begins at once."""
        self.should_exit = True
        wake, loop = self._wake, self._loop
        if wake is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server has stopped
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        """Tick as uvicorn does until told to exit; ``request_exit()`` wakes it between ticks."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _TICK_SECONDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Shut down as uvicorn does, without its fixed sleeps."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._settled(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            _logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks)
            )
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _settled(self) -> None:
        while self.server_state.connections or self.server_state.tasks:
            await asyncio.sleep(_POLL_SECONDS)
        for server in self.servers:
            await server.wait_closed()
