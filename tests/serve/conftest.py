"""`slimdiff serve`'s test fixtures: tiny student / teacher pipeline folders, a live uvicorn server on a free
port, and a gate that holds a generation after a chosen step (so that progress and cancel are seen
deterministically, however fast the tiny models are)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from slimdiff.diffusion import training_scheduler
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.serve import server as server_module
from slimdiff.serve.app import make_server
from slimdiff.serve.server import load_generator


@pytest.fixture(scope="session")
def tiny_folder(tiny_unet):
    def save(path, seed: int, widths=(8, 16), size: int = 8) -> str:
        unet = tiny_unet(seed, widths=widths, size=size)
        SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler()).save_pretrained(path)
        return str(path)

    return save


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_folder):
    """(student folder, teacher folder): a slim student and a wider teacher on the same 8×8 images."""
    root = tmp_path_factory.mktemp("serve")
    return tiny_folder(root / "student", 0), tiny_folder(root / "teacher", 1, (16, 16))


class Gate:
    """Holds a generation after step `after` of its first run until `open()` (or 30 s)."""

    def __init__(self, after: int = 1):
        self.after, self.opened, self.reached = after, threading.Event(), threading.Event()

    def open(self) -> None:
        self.opened.set()

    def wrap(self, generate):
        def gated(pipe, n, seed, batch, callback_on_step_end, **call):
            def callback(p, step, timestep, tensors):
                out = callback_on_step_end(p, step, timestep, tensors)
                if step + 1 == self.after and not self.opened.is_set():
                    self.reached.set()
                    self.opened.wait(30)
                return out

            return generate(pipe, n, seed, batch=batch, callback_on_step_end=callback, **call)

        return gated


@pytest.fixture
def gate(monkeypatch):
    held = Gate()
    monkeypatch.setattr(server_module, "generate", held.wrap(server_module.generate))
    yield held
    held.open()


def start(generator, host: str = "127.0.0.1"):
    """A live server for `generator` on a free port, in a thread: (url, stop)."""
    server, sock = make_server(generator, host, 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


@pytest.fixture(scope="module")
def served(pair):
    """(url, generator) of a live server for the student and teacher of `pair`."""
    generator = load_generator(*pair)
    url, stop = start(generator)
    yield url, generator
    stop()


@pytest.fixture(scope="module")
def live(served):
    return served[0]


def events(lines) -> list[dict]:
    """The server-sent events of a response, as their JSON data."""
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
