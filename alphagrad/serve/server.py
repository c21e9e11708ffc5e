"""Running the app under uvicorn: loopback by default, and a stop that never hangs.

On Ctrl-C or SIGTERM the app's generations end first (each open stream gets an error event
and its [DONE]), so uvicorn's wait for open connections is short.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


class Server(uvicorn.Server):
    """uvicorn's server, which ends the app's streams as soon as it is asked to stop."""

    def handle_exit(self, sig: int, frame) -> None:
        self.config.app.state.shutdown()
        super().handle_exit(sig, frame)


def make_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000,
                log_level: str = "info") -> Server:
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=5)
    return Server(config)


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM."""
    make_server(app, host, port).run()
