"""Constructors (dtypes, shapes, seeding) and the Tensor API."""

import numpy as np
import pytest

import alphagrad as ag


@pytest.mark.parametrize("make", [ag.zeros, ag.ones, ag.randn, ag.rand])
def test_float_constructors(make):
    assert make(2, 3).shape == (2, 3) and make((2, 3)).shape == (2, 3)
    assert make(4).dtype == np.float32 and make(4, dtype="float64").dtype == np.float64
    assert make(2, requires_grad=True).requires_grad and make().shape == ()


def test_values():
    np.testing.assert_array_equal(ag.zeros(2, 2).data, np.zeros((2, 2)))
    np.testing.assert_array_equal(ag.ones(3).data, np.ones(3))
    np.testing.assert_array_equal(ag.full((2, 3), 7.5).data, np.full((2, 3), 7.5))
    r = ag.rand(1000).data
    assert 0 <= r.min() and r.max() < 1 and 0.4 < r.mean() < 0.6
    n = ag.randn(4000).data
    assert abs(n.mean()) < 0.1 and 0.9 < n.std() < 1.1


def test_tensor_dtype_policy():
    assert ag.tensor([1.0, 2.0]).dtype == np.float32
    assert ag.tensor([1, 2]).dtype == np.int64
    assert ag.tensor([True]).dtype == np.bool_
    assert ag.tensor(np.ones(2, np.float64)).dtype == np.float64
    assert ag.tensor(np.ones(2, np.int32)).dtype == np.int64
    assert ag.tensor([1, 2], dtype="float64").dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        ag.tensor(["a"])


def test_tensor_copies_and_from_numpy_shares():
    a = np.zeros(3, np.float32)
    t, shared = ag.tensor(a), ag.from_numpy(a)
    a[0] = 5
    assert t.data[0] == 0 and shared.data[0] == 5
    with pytest.raises(TypeError, match="ndarray"):
        ag.from_numpy([1, 2])


def test_full_arange_randint_dtypes():
    assert ag.full((2,), 3).dtype == np.int64 and ag.full((2,), 3.0).dtype == np.float32
    assert ag.full((2,), True).dtype == np.bool_
    np.testing.assert_array_equal(ag.arange(5).data, np.arange(5))
    assert ag.arange(5).dtype == np.int64 and ag.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_allclose(ag.arange(1, 2, 0.25).data, [1, 1.25, 1.5, 1.75])
    r = ag.randint(3, 7, (50,))
    assert r.dtype == np.int64 and r.shape == (50,) and r.data.min() >= 3 and r.data.max() < 7
    assert ag.randint(4, size=(2, 2)).data.max() < 4


def test_like_constructors():
    base = ag.ones(2, 3, dtype="float64")
    for made, fill in ((ag.zeros_like(base), 0), (ag.ones_like(base), 1)):
        assert made.shape == (2, 3) and made.dtype == np.float64 and np.all(made.data == fill)
    assert ag.zeros_like(base, dtype="float32").dtype == np.float32


def test_manual_seed_repeats_every_draw():
    def draws():
        return ag.randn(3).data, ag.rand(2).data, ag.randint(0, 100, (4,)).data

    ag.manual_seed(123)
    first = draws()
    ag.manual_seed(123)
    second = draws()
    ag.manual_seed(124)
    other = draws()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    state = ag.get_rng_state()
    again = draws()
    ag.set_rng_state(state)
    np.testing.assert_array_equal(draws()[0], again[0])


def test_repr():
    assert repr(ag.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(ag.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(ag.tensor([1.0], dtype="float64")) == "tensor([1.], dtype=float64)"
    assert repr(ag.ones(1, requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "grad_fn=<MulBackward>" in repr(ag.ones(1, requires_grad=True) * 2)


def test_scalar_and_array_accessors():
    t = ag.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.size() == (2, 2) and t.size(1) == 2 and t.numel() == 4 and t.dim() == 2 and len(t) == 2
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t.numpy() is t.data
    assert ag.tensor(3.5).item() == 3.5 and isinstance(ag.tensor([7]).item(), int)
    assert float(ag.tensor(2.0)) == 2.0 and int(ag.tensor([3])) == 3
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        t.item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(t)
    with pytest.raises(TypeError, match="0-d"):
        len(ag.tensor(1.0))


def test_detach_shares_data_without_grad():
    x = ag.ones(2, requires_grad=True)
    d = x.detach()
    assert d.data is x.data and not d.requires_grad and d.is_leaf
