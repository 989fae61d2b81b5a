"""The data order of the training loop as a pure function of (seed, micro-step, process).

Nothing here keeps state between steps, so a run resumed at micro-step m draws exactly the batches it would
have drawn had it never stopped, and each process of a distributed run takes its own slice. The timesteps
and noise of a micro-batch follow the same rule (`slimdiff.diffusion.micro_step_noise`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepSampler(Sampler[list[int]]):
    """Index batches for one process: an endless stream of seeded permutations of the data set, cut into
    global micro-batches of `batch_size × processes` of which this process takes its slice. Starts at
    micro-step `start`, so resuming continues the stream where it stopped."""

    def __init__(
        self, length: int, batch_size: int, *, seed: int, process: int, processes: int, start: int = 0
    ):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.process, self.processes, self.start = process, processes, start

    def _permutation(self, epoch: int) -> torch.Tensor:
        return torch.randperm(
            self.length, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        )

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        epoch, permutation = -1, None
        while True:
            first = (step * self.processes + self.process) * self.batch_size
            batch = []
            for position in range(first, first + self.batch_size):
                if position // self.length != epoch:
                    epoch = position // self.length
                    permutation = self._permutation(epoch)
                batch.append(int(permutation[position % self.length]))
            yield batch
            step += 1
