"""Length-grouped batches: examples of similar length together, so per-batch padding stays short."""

import torch
from torch.utils.data import Sampler

from ..models import MREProcessor
from ..models.images_mre import record_tail


def example_lengths(dataset, processor: MREProcessor, chunk_size: int = 1024) -> list[int]:
    """The number of tokens `processor` gives each row of `dataset` (the record schema)."""
    text = dataset.select_columns(
        [c for c in ("tokens", "head", "tail", "tail_box", "tail_caption") if c in dataset.column_names]
    )
    lengths = []
    for start in range(0, len(text), chunk_size):
        rows = text[start : start + chunk_size]
        records = [dict(zip(rows, values)) for values in zip(*rows.values())]
        encoded = processor(tokens=rows["tokens"], head=rows["head"], tail=[record_tail(r) for r in records])
        lengths += encoded["attention_mask"].sum(dim=1).tolist()
    return lengths


class LengthGroupedSampler(Sampler[int]):
    """
    Indices in batches of similar length, as transformers' `LengthGroupedSampler`: each epoch shuffles
    the examples, cuts them into mega-batches of `mega_batch_factor` batches, sorts each mega-batch
    by length, and shuffles the order of the resulting batches. The order depends only on `seed` and
    the epoch (`set_epoch`), so a resumed run replays the same batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, mega_batch_factor: int = 50):
        self.lengths, self.batch_size = list(lengths), batch_size
        self.seed, self.mega_batch_factor, self.epoch = seed, mega_batch_factor, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        mega_size = self.batch_size * self.mega_batch_factor
        batches = []
        for start in range(0, len(order), mega_size):
            mega_batch = sorted(order[start : start + mega_size], key=lambda i: -self.lengths[i])
            batches += [mega_batch[i : i + self.batch_size] for i in range(0, len(mega_batch), self.batch_size)]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[position]
