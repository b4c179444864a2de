"""Token shards on disk and the resumable batch order."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from lcmd_core import shards
from lcmd_core.codec import TokenSpec
from lcmd_core.shards import (
    BatchOrder,
    ShardError,
    TokenDataset,
    check_compatible,
    read_index,
    token_dtype,
    verify_shards,
    write_shards,
)

SPEC = TokenSpec(vocab_size=300, token_shape=(2, 3), fingerprint="abc123", num_classes=4)


def make_split(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SPEC.vocab_size, (n, SPEC.seq_len), generator=generator)
    labels = torch.randint(0, SPEC.num_classes, (n,), generator=generator)
    return tokens, labels


def test_round_trip_preserves_tokens_labels_and_spec(tmp_path):
    train, test = make_split(10, seed=1), make_split(3, seed=2)
    index = write_shards(
        tmp_path / "shards", {"train": train, "test": (test[0], None)}, SPEC, "toy", shard_size=4
    )

    assert index == read_index(tmp_path / "shards")
    assert index["codec"] == "toy"
    assert index["splits"]["train"]["size"] == 10
    assert [s["rows"] for s in index["splits"]["train"]["shards"]] == [4, 4, 2]
    assert [s["file"] for s in index["splits"]["test"]["shards"]] == ["test-00000.safetensors"]

    data = TokenDataset(tmp_path / "shards", "train")
    assert len(data) == 10
    assert data.spec == SPEC
    assert data.has_labels
    everything = torch.arange(10)
    assert torch.equal(data.tokens(everything), train[0])
    assert torch.equal(data.labels(everything), train[1])
    picks = torch.tensor([9, 0, 5, 4, 3, 9])
    assert torch.equal(data.tokens(picks), train[0][picks])
    assert data.tokens(picks).dtype == torch.long
    tokens, label = data[7]
    assert torch.equal(tokens, train[0][7])
    assert label.item() == train[1][7].item()
    assert torch.equal(data[-1][0], train[0][9])

    unlabelled = TokenDataset(tmp_path / "shards", "test")
    assert not unlabelled.has_labels
    assert unlabelled.labels(torch.tensor([0, 1])) is None
    assert unlabelled[2][1].item() == -1
    assert torch.equal(unlabelled.tokens(torch.arange(3)), test[0])
    with pytest.raises(IndexError):
        unlabelled[3]


@pytest.mark.parametrize(
    ("vocab_size", "dtype"),
    [
        (2, torch.uint8),
        (256, torch.uint8),
        (257, torch.int16),
        (32768, torch.int16),
        (32769, torch.int32),
    ],
)
def test_tokens_are_stored_in_the_narrowest_dtype(tmp_path, vocab_size, dtype):
    spec = TokenSpec(vocab_size=vocab_size, token_shape=(4,), fingerprint="f")
    tokens = torch.tensor([[0, 1, vocab_size - 1, vocab_size // 2]])
    write_shards(tmp_path, {"train": (tokens, None)}, spec, "toy")

    assert token_dtype(vocab_size) == dtype
    with safe_open(tmp_path / "train-00000.safetensors", framework="pt") as f:
        assert f.get_tensor("tokens").dtype == dtype
    assert torch.equal(TokenDataset(tmp_path, "train").tokens(torch.tensor([0])), tokens)


def test_tampered_shard_fails_verification_naming_the_file(tmp_path):
    write_shards(tmp_path, {"train": make_split(8)}, SPEC, "toy", shard_size=4)
    verify_shards(tmp_path)

    path = tmp_path / "train-00001.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"train-00001\.safetensors.*corrupt"):
        verify_shards(tmp_path)

    path.unlink()
    with pytest.raises(ShardError, match=r"train-00001\.safetensors.*missing"):
        verify_shards(tmp_path)


def test_incompatible_codec_is_refused_naming_both_fingerprints(tmp_path):
    index = write_shards(tmp_path, {"train": make_split(2)}, SPEC, "toy")
    check_compatible(index, SPEC)

    other = TokenSpec(vocab_size=300, token_shape=(2, 3), fingerprint="def456")
    with pytest.raises(ShardError, match=r"abc123.*def456.*lcmd prepare"):
        check_compatible(index, other)
    with pytest.raises(ShardError, match="vocab 301"):
        check_compatible(index, TokenSpec(301, (2, 3), "abc123"))
    with pytest.raises(ShardError, match=r"shape \[6\]"):
        check_compatible(index, TokenSpec(300, (6,), "abc123"))
    moved = TokenSpec(300, (2, 3), "abc123", positions=[(i, 0) for i in range(6)])
    with pytest.raises(ShardError, match="abc123"):
        check_compatible(index, moved)


def test_missing_index_and_unknown_split_are_reported(tmp_path):
    with pytest.raises(ShardError, match=r"index\.json missing.*lcmd prepare"):
        read_index(tmp_path)
    write_shards(tmp_path, {"train": make_split(2)}, SPEC, "toy")
    with pytest.raises(ShardError, match=r"no split 'valid'.*train"):
        TokenDataset(tmp_path, "valid")


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({}, "no splits"),
        ({"train": (torch.zeros(2, 6, dtype=torch.long)[0], None)}, r"integer tensor \[N, L\]"),
        ({"train": (torch.zeros(2, 6), None)}, r"integer tensor \[N, L\]"),
        ({"train": (torch.zeros(2, 5, dtype=torch.long), None)}, "length 5.*needs 6"),
        ({"train": (torch.full((2, 6), 300), None)}, r"\[0, 300\).*\[300, 300\]"),
        ({"train": (torch.full((2, 6), -1), None)}, r"\[0, 300\)"),
        ({"train": (torch.zeros(0, 6, dtype=torch.long), None)}, "empty"),
        ({"train": (torch.zeros(2, 6, dtype=torch.long), torch.zeros(3))}, "labels"),
        ({"train": (torch.zeros(2, 6, dtype=torch.long), torch.tensor([0, 4]))}, r"\[0, 4\)"),
        ({"../x": (torch.zeros(2, 6, dtype=torch.long), None)}, "split name"),
    ],
)
def test_bad_inputs_are_rejected(tmp_path, splits, message):
    with pytest.raises(ShardError, match=message):
        write_shards(tmp_path / "out", splits, SPEC, "toy")
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_shard_set(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match="not a token shard directory"):
        write_shards(tmp_path, {"train": make_split(2)}, SPEC, "toy")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_rewrite_replaces_previous_shard_set(tmp_path):
    write_shards(tmp_path / "s", {"train": make_split(9)}, SPEC, "toy", shard_size=2)
    new = make_split(3, seed=5)
    write_shards(tmp_path / "s", {"train": new}, SPEC, "toy")

    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "index.json",
        "train-00000.safetensors",
    ]
    assert torch.equal(TokenDataset(tmp_path / "s", "train").tokens(torch.arange(3)), new[0])
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_interrupted_write_leaves_previous_shard_set_intact(tmp_path, monkeypatch):
    old = make_split(6, seed=3)
    write_shards(tmp_path / "s", {"train": old}, SPEC, "toy")
    before = json.loads((tmp_path / "s" / "index.json").read_text())

    real_save = shards.save_file
    calls = []

    def crash_on_second_shard(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(tensors, path)

    monkeypatch.setattr(shards, "save_file", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "s", {"train": make_split(6, seed=4)}, SPEC, "toy", shard_size=3)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "fresh", {"train": make_split(6)}, SPEC, "toy", shard_size=3)

    assert json.loads((tmp_path / "s" / "index.json").read_text()) == before
    verify_shards(tmp_path / "s")
    assert torch.equal(TokenDataset(tmp_path / "s", "train").tokens(torch.arange(6)), old[0])
    assert not (tmp_path / "fresh").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def take(order: BatchOrder, batch_size: int, total: int) -> list[int]:
    out: list[int] = []
    while len(out) < total:
        out += order.next_batch(batch_size).tolist()
    return out


@pytest.mark.parametrize("shuffle", [True, False])
def test_batch_order_covers_every_index_once_per_epoch(shuffle):
    order = BatchOrder(10, seed=7, shuffle=shuffle)
    stream = take(order, 3, 30)
    epochs = [stream[i : i + 10] for i in range(0, 30, 10)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert (epochs[0] != epochs[1]) == shuffle
    assert order.state_dict() == {"epoch": 3, "position": 0}


def test_batch_order_ranks_get_disjoint_slices_of_one_permutation():
    orders = [BatchOrder(11, seed=1, rank=r, world_size=3) for r in range(3)]
    for epoch in range(2):
        # 11 items over 3 ranks: 3 each per epoch, strided from one permutation, its tail dropped.
        perm = torch.randperm(11, generator=torch.Generator().manual_seed(1 + epoch)).tolist()
        batches = [order.next_batch(3).tolist() for order in orders]
        assert batches == [perm[:9][r::3] for r in range(3)]
        assert len({i for batch in batches for i in batch}) == 9
    assert {s.state_dict()["epoch"] for s in orders} == {2}


def test_batch_order_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        BatchOrder(10, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="one item per rank"):
        BatchOrder(1, seed=0, world_size=2)
    with pytest.raises(ValueError, match="same data"):
        BatchOrder(4, seed=0).load_state_dict({"epoch": 0, "position": 4})


@settings(max_examples=60, deadline=None)
@given(
    num_items=st.integers(1, 40),
    world_size=st.integers(1, 4),
    batch_size=st.integers(1, 17),
    before=st.integers(0, 12),
    after=st.integers(1, 12),
    seed=st.integers(0, 2**31),
)
def test_batch_order_resumes_exactly(num_items, world_size, batch_size, before, after, seed):
    world_size = min(world_size, num_items)
    for rank in range(world_size):
        order = BatchOrder(num_items, seed, rank=rank, world_size=world_size)
        for _ in range(before):
            order.next_batch(batch_size)
        state = json.loads(json.dumps(order.state_dict()))
        expected = [order.next_batch(batch_size) for _ in range(after)]

        resumed = BatchOrder(num_items, seed, rank=rank, world_size=world_size)
        resumed.load_state_dict(state)
        assert all(torch.equal(resumed.next_batch(batch_size), e) for e in expected)
        assert all(len(e) == batch_size for e in expected)
