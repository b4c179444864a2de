"""TokenSpec: validation and JSON round trips, explicit token positions included."""

import pytest

from lcmd_core.codec import TokenSpec

TRIANGLE = ((0, 1), (0, 2), (1, 2))  # the pair positions of a 3-node upper triangle


def test_positions_survive_the_json_round_trip():
    spec = TokenSpec(vocab_size=3, token_shape=(3,), fingerprint="tri", positions=TRIANGLE)
    data = spec.to_json()
    assert data["positions"] == [[0, 1], [0, 2], [1, 2]]
    assert TokenSpec.from_json(data) == spec
    assert TokenSpec.from_json(data).positions == TRIANGLE


def test_spec_without_positions_keeps_its_old_json():
    spec = TokenSpec(vocab_size=3, token_shape=(2, 2), fingerprint="grid")
    data = spec.to_json()
    assert "positions" not in data
    assert TokenSpec.from_json(data) == spec and spec.positions is None


def test_positions_are_normalised_to_int_tuples():
    spec = TokenSpec(3, (3,), "tri", positions=[[0, 1], [0, 2], [1, 2]])
    assert spec.positions == TRIANGLE
    assert hash(spec)  # still a frozen, hashable spec


@pytest.mark.parametrize(
    ("positions", "match"),
    [
        (((0, 1), (0, 2)), r"one coordinate per token \(3\), got 2"),
        (((0, 1), (0, 2), (1, 2), (2, 3)), r"one coordinate per token \(3\), got 4"),
        (((0, 1), (0,), (1, 2)), r"one positive dimension, got dimensions \[1, 2\]"),
        (((), (), ()), r"one positive dimension, got dimensions \[0\]"),
    ],
)
def test_bad_positions_are_a_clear_value_error(positions, match):
    with pytest.raises(ValueError, match=match):
        TokenSpec(vocab_size=3, token_shape=(3,), fingerprint="tri", positions=positions)
