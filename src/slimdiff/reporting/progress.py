"""The one progress-bar style of slimdiff's long steps — training, latent caching, sampling, evaluation and the
analysis commands: a tqdm bar on stderr, the bar diffusers and transformers draw as well (a pipeline's own
per-step bar is diffusers' `progress_bar`, also tqdm), with a description, n / total, elapsed < remaining and
the rate. Bars are transient (gone when done) unless asked to stay; on a stderr that is not a terminal they
are off unless `disable=False` asks for them (a training run's bar, as before).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


def progress_bar(
    description: str,
    total: int | None = None,
    *,
    iterable: Iterable | None = None,
    initial: int = 0,
    disable: bool | None = None,
    leave: bool = False,
) -> tqdm:
    """A bar of `total` units (or over `iterable`) labelled `description`; `disable=None`: shown on a
    terminal only. Use it as a context manager, or close it."""
    return tqdm(
        iterable,
        desc=description,
        total=total,
        initial=initial,
        disable=disable,
        leave=leave,
        dynamic_ncols=True,
    )


def write(line: str) -> None:
    """Print `line` above any open bar (a log line during training)."""
    tqdm.write(line)


@contextmanager
def progress_bars(
    disable: bool | None = None, leave: bool = False
) -> Iterator[Callable[[str, int], Callable[..., None]]]:
    """`track(description, total) → advance(k=1)`: the bars of stages that run one after another (an
    evaluation's, an analysis'): opening one closes the one before; the last is closed on exit."""
    bars: list[tqdm] = []

    def track(description: str, total: int) -> Callable[..., None]:
        if bars:
            bars[-1].close()
        bars.append(progress_bar(description, total, disable=disable, leave=leave))
        bar = bars[-1]
        return lambda k=1: bar.update(k)

    try:
        yield track
    finally:
        if bars:
            bars[-1].close()
