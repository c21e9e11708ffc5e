"""Helpers for the server tests: a live server in a thread, a slowed-down model."""

from __future__ import annotations

import threading
import time


class LiveServer:
    """uvicorn in a thread on a free loopback port; ``url`` is its base address."""

    def __init__(self, app):
        from alphagrad.serve import make_server

        self.app = app
        self.server = make_server(app, "127.0.0.1", 0, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Slow:
    """The model with a pause before every forward, so a stream outlasts its client."""

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        time.sleep(0.02)
        return self.model(*args, **kwargs)
