import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tekken_diffusers.actions import (
    ATARI_ACTION_NAMES,
    DOWN,
    LEFT,
    LK,
    LP,
    RIGHT,
    RK,
    RP,
    UP,
    atari_to_id,
    bits_to_ids,
    id_to_atari,
    id_to_notation,
    ids_to_bits,
    keys_to_id,
    notation_to_id,
    parse_action_sequence,
)

# Ids a stick can actually produce: never Up+Down or Left+Right together.
possible_ids = st.integers(0, 255).filter(lambda i: not (i & UP and i & DOWN) and not (i & LEFT and i & RIGHT))
sides = st.sampled_from(["left", "right"])


def test_bit_order_is_msb_first():
    # The original's overlay self-test: [16, 32, 128, 64] are Right, Left, Up, Down.
    bits = ids_to_bits(np.array([16, 32, 128, 64, 8, 4, 2, 1]))
    np.testing.assert_array_equal(bits, np.eye(8, dtype=np.uint8)[[3, 2, 0, 1, 4, 5, 6, 7]])


@given(st.lists(st.integers(0, 255), min_size=1, max_size=64))
def test_ids_bits_round_trip_numpy(ids):
    ids = np.array(ids, dtype=np.uint8).reshape(1, -1)
    bits = ids_to_bits(ids)
    assert bits.shape == (1, ids.shape[1], 8) and bits.dtype == np.uint8
    np.testing.assert_array_equal(bits_to_ids(bits), ids)


@given(st.lists(st.integers(0, 255), min_size=1, max_size=64))
def test_ids_bits_round_trip_torch(ids):
    ids = torch.tensor(ids, dtype=torch.uint8).reshape(-1, 1)
    bits = ids_to_bits(ids)
    assert bits.shape == (ids.shape[0], 1, 8) and bits.dtype == torch.float32
    assert torch.equal(bits_to_ids(bits), ids)
    np.testing.assert_array_equal(bits.numpy(), ids_to_bits(ids.numpy()).astype(np.float32))


@given(possible_ids, sides)
def test_notation_round_trip(action_id, side):
    assert notation_to_id(id_to_notation(action_id, side), side) == action_id


@given(st.integers(0, 17))
def test_atari_round_trip(atari):
    assert id_to_atari(atari_to_id(atari)) == atari


def test_atari_mapping():
    names = dict(zip(ATARI_ACTION_NAMES, atari_to_id(np.arange(18))))
    assert names["NOOP"] == 0 and names["FIRE"] == LP
    assert names["UPRIGHT"] == UP | RIGHT and names["DOWNLEFTFIRE"] == DOWN | LEFT | LP
    with pytest.raises(ValueError, match="no Atari equivalent"):
        id_to_atari([RP])
    with pytest.raises(ValueError, match=r"\[0, 17\]"):
        atari_to_id(18)


def test_notation_examples_and_sides():
    assert notation_to_id("n") == 0
    assert notation_to_id("d/f+2") == DOWN | RIGHT | RP
    assert notation_to_id("d/f+2", side="right") == DOWN | LEFT | RP
    assert notation_to_id("1+2") == LP | RP
    assert notation_to_id("U/B+3+4") == UP | LEFT | LK | RK
    assert notation_to_id("df") == notation_to_id("d/f")
    assert id_to_notation(DOWN | LEFT | LP, side="right") == "d/f+1"
    assert id_to_notation(0) == "n"


@pytest.mark.parametrize(
    "notation, message",
    [
        ("x", "unknown token 'x'"),
        ("f+b", "more than one direction"),
        ("", "empty input"),
        ("1+1", "button 1 appears twice"),
        ("5", "unknown token '5'"),
        ("f/d", "unknown token 'f/d'"),
    ],
)
def test_notation_errors(notation, message):
    with pytest.raises(ValueError, match=message):
        notation_to_id(notation)


def test_impossible_ids():
    with pytest.raises(ValueError, match="Up and Down"):
        id_to_notation(UP | DOWN)
    with pytest.raises(ValueError, match="Left and Right"):
        id_to_notation(LEFT | RIGHT | LP)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        id_to_notation(256)
    with pytest.raises(ValueError, match=r"\[0, 255\].*found \[0, 300\]"):
        ids_to_bits(np.array([0, 300]))
    with pytest.raises(ValueError, match="integer"):
        ids_to_bits(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="side"):
        notation_to_id("f", side="middle")


def test_parse_action_sequence():
    np.testing.assert_array_equal(parse_action_sequence("f*3, 1+2 n"), [RIGHT, RIGHT, RIGHT, LP | RP, 0])
    with pytest.raises(ValueError, match="repeat count"):
        parse_action_sequence("f*0")
    with pytest.raises(ValueError, match="no inputs"):
        parse_action_sequence(" , ")


def test_keyboard_map():
    assert keys_to_id("wu") == UP | LP
    assert keys_to_id(["D", "K", "J"]) == RIGHT | LK | RK
    assert keys_to_id("ad") == 0  # opposite directions cancel
    assert keys_to_id("wsi") == RP
    assert keys_to_id("zx") == 0
