"""The same micro-batches as ``loader.micro_batches``, produced by an NVIDIA DALI pipeline.

Optional (``pip install megatron-hybrid[dali]``, ~1 GB): ``fn.external_source`` reads samples in
parallel worker processes (``py_num_workers``) from the very dataset and index order the default
loader uses, and on a GPU the batch is prefetched to device memory by DALI. Because the order
comes from :func:`rank_sample_indices`, switching loaders (or resuming with the other one) does
not change what the model sees.
"""

from __future__ import annotations

import numpy as np
import torch

from megatron_hybrid.data.loader import rank_sample_indices


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


class _Source:
    """DALI per-sample source: sample ``k`` of the epoch is the k-th index of this rank's order.

    Picklable (DALI ships it to its worker processes), so it holds the dataset and plain ints.
    """

    def __init__(self, dataset, start_step, num_steps, micro_batch_size, dp_size, dp_rank, global_batch_size):
        self.dataset = dataset
        self.start_step, self.num_steps = start_step, num_steps
        self.args = (micro_batch_size, dp_size, dp_rank, global_batch_size)
        self.per_step = global_batch_size // dp_size

    def __getstate__(self) -> dict:
        # Workers rebuild the dataset from its recipe (cheap, memory-mapped) when it has one.
        state = self.__dict__.copy()
        if getattr(self.dataset, "recipe", None) is not None:
            state["recipe"], state["dataset"] = self.dataset.recipe, None
        return state

    def __call__(self, sample_info):
        if self.dataset is None:
            self.dataset = self.recipe()
        k = sample_info.idx_in_epoch
        step, within = divmod(k, self.per_step)
        if step >= self.num_steps:
            raise StopIteration
        index = int(rank_sample_indices(self.start_step + step, *self.args).reshape(-1)[within])
        sample = self.dataset[index]
        return sample["tokens"].numpy().astype(np.int64), sample["labels"].numpy().astype(np.int64)


def micro_batches(
    dataset, start_step, num_steps, micro_batch_size, dp_size, dp_rank, global_batch_size, num_workers=2, device_id=None
):
    """DALI version of :func:`megatron_hybrid.data.loader.micro_batches` (same arguments)."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    if device_id is None and torch.cuda.is_available():
        device_id = torch.cuda.current_device()
    source = _Source(dataset, start_step, num_steps, micro_batch_size, dp_size, dp_rank, global_batch_size)

    @pipeline_def(
        batch_size=micro_batch_size,
        num_threads=2,
        device_id=device_id,
        py_num_workers=max(1, num_workers),
        py_start_method="spawn",
        prefetch_queue_depth=2,
    )
    def pipeline():
        tokens, labels = fn.external_source(
            source=source, num_outputs=2, batch=False, parallel=True, dtype=[types.INT64, types.INT64]
        )
        if device_id is not None:  # prefetch onto the GPU inside DALI's pipeline
            tokens, labels = tokens.gpu(), labels.gpu()
        return tokens, labels

    pipe = pipeline()
    pipe.build()
    iterator = DALIGenericIterator(pipe, ["tokens", "labels"], last_batch_policy=LastBatchPolicy.DROP, auto_reset=False)
    for out in iterator:
        yield {"tokens": out[0]["tokens"], "labels": out[0]["labels"]}
