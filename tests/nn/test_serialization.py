"""``ag.save`` / ``ag.load``: safetensors underneath, a tensor or a state_dict, nothing pickled."""

import json
import struct

import numpy as np
import pytest

import alphagrad as ag


def test_state_dict_round_trip_loads_strictly(tmp_path):
    ag.manual_seed(0)
    model = ag.nn.Sequential(ag.nn.Linear(4, 3), ag.nn.ReLU(), ag.nn.Linear(3, 2))
    ag.save(model.state_dict(), tmp_path / "m.safetensors")
    fresh = ag.nn.Sequential(ag.nn.Linear(4, 3), ag.nn.ReLU(), ag.nn.Linear(3, 2))
    fresh.load_state_dict(ag.load(tmp_path / "m.safetensors"))
    x = ag.randn(5, 4)
    np.testing.assert_array_equal(fresh(x).data, model(x).data)


def test_one_tensor_round_trips_as_a_tensor_and_the_file_is_plain_safetensors(tmp_path):
    t = ag.arange(6).reshape(2, 3).double()
    ag.save(t, tmp_path / "t.st")
    back = ag.load(tmp_path / "t.st")
    assert isinstance(back, ag.Tensor) and back.dtype == np.float64
    np.testing.assert_array_equal(back.data, t.data)
    raw = (tmp_path / "t.st").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["tensor"]["dtype"] == "F64" and header["tensor"]["shape"] == [2, 3]


def test_what_safetensors_cannot_hold_is_refused_by_name(tmp_path):
    model = ag.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"pass model.state_dict\(\)"):
        ag.save(model, tmp_path / "x")
    with pytest.raises(TypeError, match="entry 'state' is a dict"):
        ag.save({"state": {}}, tmp_path / "x")
    assert not (tmp_path / "x").exists()
