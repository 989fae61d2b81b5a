"""`slimdiff serve MODEL [--teacher T]`: options → `load_generator` + `make_server`, served until Ctrl-C."""

from __future__ import annotations

import typer

from slimdiff.cli.app import app, say, user_errors


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
    """Serve a local page to generate images from MODEL (and its teacher, side by side, from the same noise)."""
    import torch

    from slimdiff.serve.http import make_server
    from slimdiff.serve.server import load_generator

    if threads:
        torch.set_num_threads(threads)
    with user_errors():
        server = make_server(load_generator(model, teacher, decoder), host, port)
    address, bound = server.server_address[:2]
    say(f"serving {model} on http://{address}:{bound}/ (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: bound to {host}: other machines can reach this page", stderr=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("stopped")
    finally:
        server.server_close()
