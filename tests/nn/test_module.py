"""Module, Parameter and the containers: reflection, tied weights, modes, state dicts, repr."""

import numpy as np
import pytest

import alphagrad as ag
from alphagrad import nn


class Tied(nn.Module):
    """Two layers sharing one weight, plus a list and a dict of sub-modules."""

    def __init__(self):
        self.emb = nn.Embedding(5, 3)
        self.blocks = nn.ModuleList([nn.Linear(3, 3), nn.LayerNorm(3, bias=False)])
        self.heads = nn.ModuleDict(out=nn.Linear(3, 5, bias=False))
        self.heads["out"].weight = self.emb.weight
        self.scale = nn.Parameter(np.ones(1, np.float32))


EXPECTED_NAMES = ["scale", "emb.weight", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
                  "heads.out.weight"]


def test_state_dict_names_in_assignment_order_with_tied_weight_under_both_names():
    model = Tied()
    sd = model.state_dict()
    assert list(sd) == EXPECTED_NAMES
    assert sd["heads.out.weight"] is sd["emb.weight"]


def test_parameters_yield_a_tied_weight_once():
    model = Tied()
    names = [name for name, _ in model.named_parameters()]
    assert names == [n for n in EXPECTED_NAMES if n != "heads.out.weight"]
    assert len(list(model.parameters())) == 5
    assert model.num_parameters() == 1 + 15 + 9 + 3 + 3


def test_named_modules_and_children():
    model = Tied()
    assert [n for n, _ in model.named_modules()] == [
        "", "emb", "blocks", "blocks.0", "blocks.1", "heads", "heads.out"]
    assert [type(m).__name__ for m in model.children()] == ["Embedding", "ModuleList", "ModuleDict"]
    assert len(list(model.modules())) == 7


def test_train_eval_reach_every_module():
    model = Tied()
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_to_none_or_zeros():
    layer = nn.Linear(3, 2)
    layer(ag.randn(4, 3)).sum().backward()
    layer.zero_grad(set_to_none=False)
    assert np.all(layer.weight.grad.data == 0) and np.all(layer.bias.grad.data == 0)
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_load_state_dict_round_trip_copies_and_casts():
    ag.manual_seed(0)
    a, b = Tied(), Tied()
    sd = {k: v.astype(np.float64) for k, v in a.state_dict().items()}
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, value in b.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, a.state_dict()[name])
    sd["emb.weight"][0, 0] = 99.0  # copied in, not shared
    assert b.emb.weight.data[0, 0] != 99.0


def test_load_state_dict_reports_all_problems_together_before_copying():
    model = Tied()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = dict(before)
    del sd["blocks.0.bias"]
    sd["extra.weight"] = np.zeros(2)
    sd["blocks.1.weight"] = np.zeros(4)
    sd["emb.weight"] = np.full((5, 3), 7.0)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    message = str(info.value)
    for part in ("blocks.0.bias", "extra.weight", "blocks.1.weight", "(4,)", "(3,)"):
        assert part in message
    np.testing.assert_array_equal(model.emb.weight.data, before["emb.weight"])


def test_load_state_dict_non_strict_returns_the_keys():
    model = Tied()
    sd = {"emb.weight": np.ones((5, 3)), "stray": np.ones(1)}
    result = model.load_state_dict(sd, strict=False)
    assert result.unexpected_keys == ["stray"]
    # the tied alias is not missing: its weight came under the other name
    assert set(result.missing_keys) == set(EXPECTED_NAMES) - {"emb.weight", "heads.out.weight"}
    assert np.all(model.heads["out"].weight.data == 1)  # the tied alias sees it
    with pytest.raises(ValueError, match="shape mismatches"):
        model.load_state_dict({"emb.weight": np.ones((2, 3))}, strict=False)


def test_strict_load_needs_one_name_of_a_tied_weight():
    source = Tied()
    sd = {k: v.copy() for k, v in source.state_dict().items() if k != "heads.out.weight"}
    model = Tied()
    model.load_state_dict(sd)  # strict, as files that store a tied weight once are
    np.testing.assert_array_equal(model.heads["out"].weight.data, source.emb.weight.data)
    del sd["emb.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['emb.weight', 'heads.out.weight'\]"):
        model.load_state_dict(sd)


def test_to_double_casts_parameters_and_keeps_ties():
    model = Tied().double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.heads["out"].weight is model.emb.weight
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to(np.int64)


def test_repr_shows_structure_sizes_and_counts():
    text = repr(Tied())
    assert "(emb): Embedding(5, 3)" in text
    assert "(0): Linear(in_features=3, out_features=3, bias=True)" in text
    assert "(1): LayerNorm((3,), eps=1e-05, bias=False)" in text
    assert "(scale): Parameter(1,) float32" in text
    assert text.startswith("Tied(  # 31 parameters")


def test_module_list_indexing_and_errors():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and layers[-1] is layers[2]
    assert list(layers[1:]) == [layers[1], layers[2]]
    with pytest.raises(IndexError, match="out of range"):
        layers[3]
    with pytest.raises(TypeError, match="holds Modules"):
        layers.append("not a module")


def test_module_dict_access_and_errors():
    heads = nn.ModuleDict({"a": nn.GELU()}, b=nn.Dropout(0.1))
    assert heads.keys() == ["a", "b"] and "a" in heads and "z" not in heads
    with pytest.raises(KeyError, match="has no module"):
        heads["z"]
    for bad in ("train", "x.y", ""):
        with pytest.raises(KeyError, match="cannot name"):
            heads[bad] = nn.GELU()


def test_sequential_applies_in_order():
    ag.manual_seed(1)
    seq = nn.Sequential(nn.Linear(4, 6), nn.GELU(approximate="tanh"), nn.Linear(6, 2))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    (w1, b1), (w2, b2) = (seq[0].weight.data, seq[0].bias.data), (seq[2].weight.data, seq[2].bias.data)
    h = x @ w1.T + b1
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    np.testing.assert_allclose(seq(ag.tensor(x)).data, h @ w2.T + b2, rtol=1e-5, atol=1e-6)


def test_parameter_shares_float_arrays_and_requires_grad():
    array = np.zeros((2, 2), np.float64)
    p = nn.Parameter(array)
    assert p.data is array and p.requires_grad and p.dtype == np.float64
    assert nn.Parameter([1.0, 2.0]).dtype == np.float32
    assert not nn.Parameter(array, requires_grad=False).requires_grad


def test_forward_not_defined():
    with pytest.raises(NotImplementedError, match="does not define forward"):
        nn.Module()(1)


def test_empty_weights_take_no_memory_and_assign_adopts_the_arrays():
    with nn.init.empty_weights():
        model = Tied()
    built = [p for name, p in model.named_parameters() if name != "scale"]  # made by layers
    assert all(p.data.strides == (0,) * p.data.ndim for p in built)
    arrays = {name: np.random.default_rng(0).standard_normal(p.shape).astype(np.float32)
              for name, p in Tied().named_parameters(remove_duplicate=False)}
    arrays["heads.out.weight"] = arrays["emb.weight"]
    arrays["blocks.0.bias"] = arrays["blocks.0.bias"].astype(np.float64)  # cast: a copy
    arrays["scale"].flags.writeable = False  # a parameter must be writable: a copy
    model.load_state_dict(arrays, assign=True)
    own = dict(model.named_parameters(remove_duplicate=False))
    for name in ("emb.weight", "blocks.0.weight", "blocks.1.weight"):
        assert own[name].data is arrays[name], name
    assert own["heads.out.weight"] is own["emb.weight"]  # still tied
    for name in ("blocks.0.bias", "scale"):
        assert own[name].data.dtype == np.float32 and own[name].data.flags.writeable
        np.testing.assert_array_equal(own[name].data, arrays[name].astype(np.float32))


def test_assign_never_lets_two_distinct_weights_share_one_array():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    shared = np.ones((2, 2), np.float32)
    model.load_state_dict({"0.weight": shared, "1.weight": shared}, assign=True)
    first, second = model.parameters()
    assert first.data is shared and second.data is not shared
    np.testing.assert_array_equal(second.data, shared)


def test_load_state_dict_errors_stay_short():
    with nn.init.empty_weights():
        model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(20)])
    with pytest.raises(ValueError, match=r"missing keys \[.*'... 32 more'\]") as info:
        model.load_state_dict({})
    assert len(str(info.value)) < 400
