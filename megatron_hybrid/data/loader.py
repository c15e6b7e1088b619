"""This rank's micro-batches, in an order fixed by the seed and resumable at any step.

Step ``s`` of training consumes global samples ``[s*G, (s+1)*G)`` of the dataset (which is itself
shuffled by the seed), whatever the layout: micro-batch ``m`` of data-parallel rank ``d`` holds
samples ``s*G + m*(b*D) + d*b + [0, b)`` (b: micro-batch size, D: DP size, G = b*D*M).
Every tensor/pipeline rank of a DP rank reads the same samples. Resuming at step ``s`` starts the
same sequence at ``s``, so a resumed run sees exactly the batches the uninterrupted one would.
"""

from __future__ import annotations

import signal

import numpy as np
import torch


def rank_sample_indices(
    step: int, micro_batch_size: int, dp_size: int, dp_rank: int, global_batch_size: int
) -> np.ndarray:
    """Dataset indices of this DP rank's micro-batches at ``step``: shape [num_micro, micro_batch_size]."""
    num_micro = global_batch_size // (micro_batch_size * dp_size)
    base = step * global_batch_size
    micro = np.arange(num_micro)[:, None] * (micro_batch_size * dp_size)
    within = dp_rank * micro_batch_size + np.arange(micro_batch_size)[None, :]
    return base + micro + within


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields lists of dataset indices, one list per micro-batch, from ``start_step`` on."""

    def __init__(self, start_step, num_steps, micro_batch_size, dp_size, dp_rank, global_batch_size):
        self.start_step, self.num_steps = start_step, num_steps
        self.args = (micro_batch_size, dp_size, dp_rank, global_batch_size)

    def __iter__(self):
        for step in range(self.start_step, self.start_step + self.num_steps):
            yield from rank_sample_indices(step, *self.args).tolist()

    def __len__(self) -> int:
        num_micro = self.args[3] // (self.args[0] * self.args[1])
        return self.num_steps * num_micro


def collate(samples: list[dict]) -> dict:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def ignore_sigterm(worker_id: int) -> None:
    """Data workers outlive a SIGTERM sent to the whole job (SLURM preemption, `kill -- -PGID`), so the
    trainer can finish its step and save before it shuts them down; dying first would kill the save."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def micro_batches(dataset, start_step, num_steps, micro_batch_size, dp_size, dp_rank, global_batch_size, num_workers=0):
    """An iterator over this rank's micro-batches ``{"tokens", "labels"}`` ([b, s] int64)."""
    sampler = StepBatchSampler(start_step, num_steps, micro_batch_size, dp_size, dp_rank, global_batch_size)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=ignore_sigterm if num_workers > 0 else None,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers > 0 else None,
    )
    return iter(loader)
