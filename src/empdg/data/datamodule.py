"""LightningDataModule: prepared examples -> vocabulary -> encoded datasets -> batches."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from empdg.data.dataset import BUCKET_KEYS, EncodedDataset, SequenceLimits, collate
from empdg.data.errors import DataError
from empdg.data.examples import DialogueExample
from empdg.data.preprocess import PreparedData, ensure_source_available, prepare_examples
from empdg.data.sampler import BucketBatchSampler
from empdg.data.vocab import Vocab

log = logging.getLogger(__name__)

#: Splits a Lightning stage reads; an empty one stops setup() before any model is built.
_STAGE_SPLITS = {
    None: ("train", "valid"),
    "fit": ("train", "valid"),
    "validate": ("valid",),
    "test": ("test",),
    "predict": ("test",),
}


def vocabulary_tokens(examples: list[DialogueExample]):
    """Tokens that enter the vocabulary: what the model reads and writes in training."""
    for ex in examples:
        yield from ex.context
        yield ex.target
        if ex.feedback:
            yield ex.feedback


def check_loader_settings(cfg: Mapping[str, Any]) -> None:
    """The sizes, lengths and bucketing key the datamodule reads; every impossible one named in one
    :class:`DataError` (one ``error:`` line) before any data is read."""
    found = [f"data.{k}={cfg[k]} must be >= 1" for k in ("batch_size", "eval_batch_size") if int(cfg[k]) < 1]
    found += [f"data.num_workers={cfg['num_workers']} must be >= 0"] if int(cfg["num_workers"]) < 0 else []
    lengths = ("max_context_len", "max_target_len", "max_emotion_words")
    found += [f"data.{k}={cfg[k]} must be >= 2" for k in lengths if int(cfg[k]) < 2]
    if cfg["bucket_by"] not in BUCKET_KEYS:
        found.append(f"data.bucket_by={cfg['bucket_by']!r}: choose one of {', '.join(BUCKET_KEYS)}")
    if found:
        raise DataError("; ".join(found))


class DialogueDataModule(pl.LightningDataModule):
    """Serves padded batches; the vocabulary comes from the training split or a checkpoint."""

    def __init__(self, data_cfg: Mapping[str, Any], seed: int = 0, vocab: Vocab | None = None) -> None:
        super().__init__()
        self.cfg = dict(data_cfg)
        self.seed = seed
        self.vocab = vocab
        check_loader_settings(self.cfg)
        self.limits = SequenceLimits(
            int(self.cfg["max_context_len"]),
            int(self.cfg["max_target_len"]),
            int(self.cfg["max_emotion_words"]),
        )
        self.prepared: PreparedData | None = None
        self.datasets: dict[str, EncodedDataset] = {}
        self._train_sampler: BucketBatchSampler | None = None
        self._resume_batches = 0

    # -- preparation -----------------------------------------------------------------------
    def prepare_data(self) -> None:
        ensure_source_available(self.cfg)
        prepare_examples(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.prepared = prepare_examples(self.cfg)
        examples = {split: self._limit(split, exs) for split, exs in self.prepared.examples.items()}
        self._check_not_emptied(examples, stage)
        if self.vocab is None:
            vcfg = self.cfg["vocab"]
            self.vocab = Vocab.build(
                vocabulary_tokens(examples["train"]),
                min_count=int(vcfg["min_count"]),
                max_size=vcfg.get("max_size"),
            )
        self.datasets = {
            split: EncodedDataset(exs, self.vocab, self.limits, self.cfg["bucket_by"])
            for split, exs in examples.items()
        }
        log.info("vocabulary: %d tokens", len(self.vocab))  # the data line (preprocess) describes the cache

    def _check_not_emptied(self, examples: dict[str, list[DialogueExample]], stage: str | None) -> None:
        """prepare_examples() guarantees non-empty splits; data.limit_examples could still empty one
        the stage needs, which would end in a run without validation metrics or a vocabulary error."""
        for split in _STAGE_SPLITS.get(stage, ("train", "valid")):
            if not examples.get(split):
                limit = (self.cfg.get("limit_examples") or {}).get(split)
                raise DataError(
                    f"the {split} split is empty after data.limit_examples.{split}={limit}; "
                    f"raise it to at least 1 (the {stage or 'fit'} stage needs {split} examples)"
                )

    def _limit(self, split: str, examples: list[DialogueExample]) -> list[DialogueExample]:
        limit = (self.cfg.get("limit_examples") or {}).get(split)
        return examples if limit is None else examples[: int(limit)]

    # -- loaders ---------------------------------------------------------------------------
    def _rank_info(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        world, rank = self._rank_info()
        sampler = BucketBatchSampler(
            self.datasets["train"].lengths,
            int(self.cfg["batch_size"]),
            shuffle=True,
            bucketing=bool(self.cfg["bucketing"]),
            bucket_size_multiplier=int(self.cfg["bucket_size_multiplier"]),
            drop_last=world > 1,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        if self._resume_batches:
            sampler.skip_next(self._resume_batches)
            self._resume_batches = 0
        self._train_sampler = sampler
        return self._loader(self.datasets["train"], sampler)

    def _eval_loader(self, split: str) -> DataLoader:
        world, rank = self._rank_info()
        sampler = BucketBatchSampler(
            self.datasets[split].lengths,
            int(self.cfg["eval_batch_size"]),
            shuffle=False,
            bucketing=False,
            num_replicas=world,
            rank=rank,
            even_shards=False,
        )
        return self._loader(self.datasets[split], sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _loader(self, dataset: EncodedDataset, sampler: BucketBatchSampler) -> DataLoader:
        workers = int(self.cfg["num_workers"])
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            persistent_workers=workers > 0,
            # each new iterator draws a base seed from this generator; without one it would draw from the
            # global torch RNG, so every validation would shift the training RNG stream and a resumed run
            # (whose checkpoint follows an extra end-of-budget validation) would not continue exactly
            generator=torch.Generator().manual_seed(self.seed),
        )

    # -- exact resume ----------------------------------------------------------------------
    def resume_after(self, batches_done_in_epoch: int) -> None:
        """Skip the batches of the current epoch that an interrupted run already trained on."""
        self._resume_batches = batches_done_in_epoch
        if self._train_sampler is not None:
            self._train_sampler.skip_next(batches_done_in_epoch)
