"""`slimdiff serve MODEL [--teacher T]`: options → `load_generator` + `make_server`, served until Ctrl-C."""

from __future__ import annotations

import typer

from slimdiff.cli.app import app, say, user_errors

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    model: str = typer.Argument(..., help="pipeline folder, run folder, UNet folder or hub id"),
    teacher: str | None = typer.Option(None, "--teacher", help="a teacher to compare with and stitch to"),
    decoder: str = typer.Option(
        "full", "--decoder", help="full, slim (MODEL/slim_decoder) or a slim decoder folder"
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind; the default serves this machine only"
    ),
    port: int = typer.Option(7860, "--port", min=0, max=65535, help="port (0: any free one)"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: torch's default)"),
) -> None:
    """Serve a local page to generate images from MODEL (and its teacher, side by side, from the same noise);
    the API is described at /docs."""
    import torch

    from slimdiff.serve.app import make_server
    from slimdiff.serve.server import load_generator

    if threads:
        torch.set_num_threads(threads)
    with user_errors():
        server, sock = make_server(load_generator(model, teacher, decoder), host, port)
    address, bound = sock.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    say(f"serving {model} on http://{shown}:{bound}/ (API: /docs; Ctrl-C stops)")
    if host not in LOCAL_HOSTS:
        say(f"warning: bound to {host}: other machines can reach this page", stderr=True)
    server.run(sockets=[sock])
    say("stopped")
