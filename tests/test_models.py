"""Batching by length in the bundled ONNX models."""

from __future__ import annotations

from codeintel.models import _length_batches


def test_batches_hold_similar_lengths_so_padding_stays_small():
    lengths = [20, 512, 18, 25, 500, 22]  # three questions and two pasted issues, as queries arrive together
    batches = _length_batches(lengths, batch_size=16)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [sorted(lengths[i] for i in b) for b in batches] == [[18, 20, 22, 25], [500, 512]]
    for batch in batches:  # padded cells at most half the real ones
        assert max(lengths[i] for i in batch) * len(batch) <= 1.5 * sum(lengths[i] for i in batch)


def test_batches_are_cut_at_batch_size():
    assert [len(b) for b in _length_batches([10] * 5, batch_size=2)] == [2, 2, 1]
    assert _length_batches([], batch_size=4) == []
