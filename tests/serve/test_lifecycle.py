"""Starting and stopping: the command line, the missing extra, and a stop that never hangs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from serve_support import LiveServer, Slow

from alphagrad.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_serve_without_the_extra_names_it(monkeypatch):
    for name in list(sys.modules):
        if name.startswith("alphagrad.serve.") and name != "alphagrad.serve.engine":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "pip install 'alphagrad[serve]'" in result.stderr and "fastapi" in result.stderr


def test_stopping_ends_in_flight_streams_with_an_error_event(trained_run, tmp_path):
    from alphagrad.serve import create_app, load_all

    models = load_all([trained_run])
    engine = models["tiny"].engine
    engine.model = Slow(engine.model)
    live = LiveServer(create_app(models, runs_root=tmp_path))
    lines: list[str] = []
    started = threading.Event()

    def stream() -> None:
        body = {"model": "tiny", "prompt": "alpha", "max_tokens": 50, "stream": True}
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=20) as r:
            for line in r.iter_lines():
                lines.append(line)
                started.set()

    client = threading.Thread(target=stream)
    client.start()
    assert started.wait(10)
    began = time.monotonic()
    live.server.handle_exit(signal.SIGTERM, None)  # what Ctrl-C or SIGTERM does
    client.join(10)
    live.thread.join(10)
    assert not client.is_alive() and not live.thread.is_alive()
    assert time.monotonic() - began < 5
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["message"] == "the server is shutting down"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_on_loopback_and_stops_on_sigterm(trained_run, runs_root):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "alphagrad.cli", "serve", str(trained_run), "--port", str(port),
         "--runs-root", str(runs_root)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(url + "/health").json()["models"] == ["tiny"]
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        with httpx.stream("GET", url + "/api/runs/live", timeout=20) as r:
            lines = r.iter_lines()
            assert next(lines) == "event: snapshot"
            process.send_signal(signal.SIGTERM)  # with a live stream open
            rest = list(lines)  # the server ends the stream
        # uvicorn shuts down, then re-raises the signal: the exit status says SIGTERM
        assert process.wait(15) in (0, -signal.SIGTERM)
        assert all(not line.startswith("event: ") or line == "event: snapshot" for line in rest)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
    assert f"http://127.0.0.1:{port}/" in stderr and "Application shutdown complete" in stderr
