"""The training sampler: a reproducible random order, optionally grouped by length."""
from __future__ import annotations

import pytest

from nextgpt.training.data import EpochSampler


def _padding(order: list[int], lengths: list[int], batch_size: int) -> int:
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_grouping_by_length_keeps_every_example_once_and_cuts_padding():
    lengths = [600 if i % 10 == 0 else 40 + i % 37 for i in range(1000)]
    plain = list(EpochSampler(1000, seed=3))
    grouped = list(EpochSampler(1000, seed=3, lengths=lengths, batch_size=16))
    assert sorted(grouped) == list(range(1000))
    assert _padding(grouped, lengths, 16) < 0.1 * _padding(plain, lengths, 16)


def test_grouped_order_is_reproducible_and_changes_with_the_epoch():
    lengths = [i % 50 for i in range(400)]
    first = EpochSampler(400, seed=1, lengths=lengths, batch_size=8)
    again = EpochSampler(400, seed=1, lengths=lengths, batch_size=8)
    assert list(first) == list(again)
    before = list(first)
    first.set_epoch(1)
    assert list(first) != before and sorted(first) == sorted(before)


def test_lengths_must_match_the_examples():
    with pytest.raises(ValueError, match="3 lengths for 4 examples"):
        EpochSampler(4, seed=0, lengths=[1, 2, 3], batch_size=2)
