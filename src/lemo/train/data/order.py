"""DataOrder: which example rows each optimizer step sees, reproducible from the step number alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DataOrder:
    """Deterministic, resumable order of example indices.

    The order is an endless stream: epoch 0's permutation, then epoch 1's, ... each drawn from `seed` and the
    epoch number alone. Step k's batch is stream[k * batch_size : (k + 1) * batch_size], so it depends only on
    (seed, num_examples, batch_size, k): a run resumed at step k sees exactly the batches an uninterrupted run
    would. A batch may straddle two epochs; no example is dropped.
    """

    num_examples: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError("DataOrder needs at least one example; add text or lower --seq-len.")

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of example indices used in `epoch`."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.num_examples, generator=gen).tolist()

    def batches(self, start_step: int = 0, batch_size: int = 1) -> Iterator[list[int]]:
        """Endless iterator of index batches, starting with the batch of step `start_step`."""
        if batch_size < 1 or batch_size > self.num_examples:
            raise ValueError(
                f"--batch-size {batch_size} must be between 1 and the number of examples "
                f"({self.num_examples}); lower --batch-size or add text."
            )
        if start_step < 0:
            raise ValueError(f"start_step={start_step} must be >= 0.")
        epoch, offset = divmod(start_step * batch_size, self.num_examples)
        order = self.epoch_order(epoch)
        batch: list[int] = []
        while True:
            take = min(batch_size - len(batch), self.num_examples - offset)
            batch.extend(order[offset : offset + take])
            offset += take
            if offset == self.num_examples:
                epoch, offset = epoch + 1, 0
                order = self.epoch_order(epoch)
            if len(batch) == batch_size:
                yield batch
                batch = []

    @staticmethod
    def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
        """Rank `rank`'s part of one global batch: the `rank`-th of `world_size` equal contiguous slices.

        Every rank draws the same global batch (same seed, same step), so the slices are disjoint, together
        cover the batch, and depend only on (step, rank, world_size): a resume at the same world size gives
        each rank the rows it would have had.
        """
        if world_size < 1 or not 0 <= rank < world_size or len(batch) % world_size:
            raise ValueError(
                f"cannot split a batch of {len(batch)} rows over {world_size} ranks as rank {rank}; the global "
                "batch must be --batch-size x --grad-accum x the number of ranks."
            )
        per = len(batch) // world_size
        return batch[rank * per : (rank + 1) * per]

    def epoch_at(self, step: int, batch_size: int = 1) -> float:
        """Fractional epoch reached after `step` steps (for logs)."""
        return step * batch_size / self.num_examples
