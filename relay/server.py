"""uvicorn's server, told to drain the relay first when it shuts down.

uvicorn waits for open requests before it stops, up to its graceful timeout, and then cancels them. The
relay's long-lived requests (a worker's lease long-poll, a tenant's result stream) would hold every
restart that long and end in a cancellation; draining ends them at once with a normal answer.
"""

from __future__ import annotations

import socket

import uvicorn


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        relay = getattr(getattr(self.config.app, "state", None), "relay", None)
        if relay is not None:
            relay.draining.set()
        await super().shutdown(sockets=sockets)
