"""Length-bucketed, shard-aware batch sampling that can resume mid-epoch.

Batches of similar length waste less compute on padding. The order depends only on
``(seed, epoch)``, so every rank draws the same batch list and takes its own share, and a resumed
run can skip exactly the batches the interrupted run already consumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        bucketing: bool = True,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        even_shards: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucketing = bucketing
        self.bucket_size = batch_size * max(1, bucket_size_multiplier)
        self.drop_last = drop_last
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        # evaluation sets even_shards=False: no example is dropped (metrics sync once, at the end)
        self.even_shards = even_shards
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, n_batches: int) -> None:
        """Resume support: the next iteration starts after ``n_batches`` of this rank's batches."""
        self._skip = n_batches

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        if self.bucketing:
            chunks = [order[i : i + self.bucket_size] for i in range(0, n, self.bucket_size)]
            order = [i for chunk in chunks for i in sorted(chunk, key=self.lengths.__getitem__)]
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and self.bucketing:
            perm = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in perm]
        if self.num_replicas == 1:
            return batches
        mine = batches[self.rank :: self.num_replicas]
        if self.even_shards:  # training: every rank steps equally often (DDP collectives line up)
            mine = mine[: len(batches) // self.num_replicas]
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        skip, self._skip = self._skip, 0
        yield from batches[skip:]

    def __len__(self) -> int:
        n_batches = len(self.lengths) // self.batch_size
        if not self.drop_last and len(self.lengths) % self.batch_size:
            n_batches += 1
        if self.num_replicas == 1:
            return n_batches
        if self.even_shards:
            return n_batches // self.num_replicas
        return len(range(self.rank, n_batches, self.num_replicas))
