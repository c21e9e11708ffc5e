"""PyTorch's everyday ops: values against NumPy, gradients against finite differences, and
torch's own results where torch is installed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from opcheck import away_from, check_op, distinct

import alphagrad as ag
from alphagrad import functional as F

FAST = settings(max_examples=15, deadline=None)
seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@FAST
@given(shape=shapes, seed=seeds)
def test_sin_cos_clamp_min_max(shape, seed):
    x = np.random.default_rng(seed).uniform(-3, 3, shape)
    check_op(ag.sin, np.sin, [x])
    check_op(lambda t: t.cos(), np.cos, [x])
    x = x + np.where(np.abs(x - 0.2) < 0.05, 0.2, 0)  # away from the kink
    check_op(lambda t: t.clamp_min(0.2), lambda a: np.maximum(a, 0.2), [x])
    check_op(lambda t: ag.clamp_max(t, 0.2), lambda a: np.minimum(a, 0.2), [x])


@FAST
@given(shape=shapes, seed=seeds, data=st.data())
def test_gather(shape, seed, data):
    rng = np.random.default_rng(seed)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    index_shape = tuple(rng.integers(1, n + 1) if d != dim % len(shape) else rng.integers(1, 5)
                        for d, n in enumerate(shape))
    index = rng.integers(0, shape[dim], index_shape)  # repeats included: gradients add up
    x = rng.standard_normal(shape)
    crop = tuple(slice(0, n) if d != dim % len(shape) else slice(None) for d, n in enumerate(index_shape))
    check_op(lambda t: t.gather(dim, ag.tensor(index)),
             lambda a: np.take_along_axis(a[crop], index, dim), [x])


def test_gather_bad_index_names_the_problem():
    x = ag.randn(3, 4)
    with pytest.raises(IndexError, match="out of range for dim 1 of size 4"):
        ag.gather(x, 1, ag.tensor([[4]]))
    with pytest.raises(ValueError, match="does not fit input shape"):
        ag.gather(x, 1, ag.tensor([0, 1]))


@FAST
@given(shape=shapes, seed=seeds, data=st.data())
def test_sort_and_topk(shape, seed, data):
    rng = np.random.default_rng(seed)
    x = distinct(rng, shape)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    descending = data.draw(st.booleans())
    k = data.draw(st.integers(0, shape[dim]))

    def np_sort(a):
        s = np.sort(a, axis=dim)
        return np.flip(s, dim) if descending else s

    check_op(lambda t: t.sort(dim, descending=descending).values, np_sort, [x])
    _, idx = ag.sort(ag.tensor(x), dim, descending=descending)
    np.testing.assert_array_equal(np.take_along_axis(x, idx.data, dim), np_sort(x))
    want = np.take(np_sort(x), np.arange(k), axis=dim)  # the k largest, or (ascending) smallest
    check_op(lambda t: t.topk(k, dim, largest=descending).values, lambda a: want, [x])


def test_sort_is_stable_with_ties_and_topk_checks_k():
    x = ag.tensor([2.0, 1.0, 2.0, 1.0])
    assert ag.sort(x).indices.tolist() == [1, 3, 0, 2]
    assert ag.sort(x, descending=True).indices.tolist() == [0, 2, 1, 3]
    assert ag.sort(ag.tensor([3, 1, 3]), descending=True).indices.tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="k=5 is out of range"):
        x.topk(5)


EINSUMS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (2,)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("ij,jk", [(2, 3), (3, 2)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (3, 3, 2)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ij,k->ik", [(2, 3), (4,)]),  # j summed from one operand only
]


@pytest.mark.parametrize("equation, operand_shapes", EINSUMS, ids=[e for e, _ in EINSUMS])
def test_einsum(equation, operand_shapes):
    rng = np.random.default_rng(len(equation))
    arrays = [rng.standard_normal(s) for s in operand_shapes]
    check_op(lambda *ts: ag.einsum(equation, *ts), lambda *a: np.einsum(equation, *a), arrays)


def test_einsum_errors_name_the_equation():
    with pytest.raises(ValueError, match="names 2 operands, got 1"):
        ag.einsum("ij,jk->ik", ag.randn(2, 3))
    with pytest.raises(ValueError, match="do not match an operand of shape"):
        ag.einsum("ijk->i", ag.randn(2, 3))


@pytest.mark.parametrize("p", [1, 2, 3, float("inf"), "fro"])
@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), ((0, 2), True)])
def test_norm(p, dim, keepdim):
    x = distinct(np.random.default_rng(7), (2, 3, 2))
    order = 2 if p == "fro" else p

    def np_norm(a):
        axis = dim if dim is not None else tuple(range(a.ndim))
        if order == float("inf"):
            return np.max(np.abs(a), axis=axis, keepdims=keepdim)
        return np.sum(np.abs(a) ** order, axis=axis, keepdims=keepdim) ** (1 / order)

    check_op(lambda t: t.norm(p, dim, keepdim), np_norm, [x])


def test_norm_of_zero_has_zero_gradient():
    x = ag.zeros(3, dtype="float64", requires_grad=True)
    x.norm().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0, 0])


@pytest.mark.parametrize("shape, sizes", [((3,), (2,)), ((2, 3), (2, 1)), ((2,), (3, 2)), ((1, 2), (2, 2, 3))])
def test_repeat(shape, sizes):
    x = np.random.default_rng(1).standard_normal(shape)
    check_op(lambda t: t.repeat(*sizes), lambda a: np.tile(a, sizes), [x])


def test_mt():
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    check_op(lambda t: t.mT, lambda a: np.swapaxes(a, -1, -2), [x])


def test_setitem_devices_and_like_constructors():
    x = ag.randn(2, 3, 4)
    y = ag.zeros(2, 3)
    y[0] = 1
    y[1, 1:] = ag.tensor([5.0, 6.0])
    np.testing.assert_array_equal(y.data, [[1, 1, 1], [0, 5, 6]])
    assert x.cpu() is x and x.to("cpu") is x and x.to(device="cpu") is x and x.device == "cpu"
    assert x.to("cpu", "float64").dtype == np.float64 and x.to(ag.zeros(1, dtype="float64")).dtype == np.float64
    with pytest.raises(ValueError, match="CPU only"):
        x.to("cuda")
    ag.manual_seed(3)
    a = ag.randn_like(x)
    ag.manual_seed(3)
    np.testing.assert_array_equal(a.data, ag.randn(2, 3, 4).data)
    assert ag.rand_like(ag.zeros(5, dtype="float64")).dtype == np.float64
    r = ag.rand_like(x).data
    assert r.shape == x.shape and r.min() >= 0 and r.max() < 1


def test_setitem_refuses_tensors_in_a_graph_but_not_under_no_grad():
    w = ag.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        w[0] = 1.0
    with pytest.raises(RuntimeError, match="part of a graph"):
        (w * 2)[0] = 1.0
    with ag.no_grad():
        w[0] = 1.0
    assert w.data.tolist() == [1, 0, 0]


def test_numpy_on_a_tensor_that_requires_grad_raises_as_in_torch():
    w = ag.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        w.numpy()
    assert w.detach().numpy() is w.data and w.numpy(force=True) is w.data


def test_inference_mode_records_nothing():
    x = ag.ones(2, requires_grad=True)
    with ag.inference_mode():
        assert not (x * 2).requires_grad
    with ag.inference_mode(False):
        assert (x * 2).requires_grad

    @ag.inference_mode()
    def double(t):
        return t * 2

    assert not double(x).requires_grad and ag.is_grad_enabled()


def test_mse_loss():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_op(lambda x, y: F.mse_loss(x, y), lambda x, y: np.mean((x - y) ** 2), [a, b])
    check_op(lambda x, y: F.mse_loss(x, y, reduction="sum"), lambda x, y: np.sum((x - y) ** 2), [a, b])
    check_op(lambda x, y: F.mse_loss(x, y, reduction="none"), lambda x, y: (x - y) ** 2, [a, b])
    with pytest.raises(ValueError, match=r"target shape \(4,\)"):
        F.mse_loss(ag.randn(3), ag.randn(4))


def test_activation_modules():
    x = away_from(np.random.default_rng(5).uniform(-3, 3, (2, 5)), [0])  # ReLU's kink
    for module, reference in [(ag.nn.ReLU(), lambda a: np.maximum(a, 0)), (ag.nn.Tanh(), np.tanh),
                              (ag.nn.Sigmoid(), lambda a: 1 / (1 + np.exp(-a))),
                              (ag.nn.SiLU(), lambda a: a / (1 + np.exp(-a)))]:
        check_op(module, reference, [x])
    model = ag.nn.Sequential(ag.nn.Linear(5, 3), ag.nn.ReLU(), ag.nn.Linear(3, 1))
    model(ag.tensor(x)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("diagonal", [-1, 0, 2])
def test_top_level_tril_triu(diagonal):
    x = np.random.default_rng(6).standard_normal((2, 3, 4))
    check_op(lambda t: ag.tril(t, diagonal), lambda a: np.tril(a, diagonal), [x])
    check_op(lambda t: ag.triu(t, diagonal=diagonal), lambda a: np.triu(a, diagonal), [x])


def test_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    tx = torch.tensor(x)
    idx = rng.integers(0, 5, (3, 2))
    np.testing.assert_array_equal(ag.tensor(x).gather(1, ag.tensor(idx)).data,
                                  torch.gather(tx, 1, torch.tensor(idx)).numpy())
    v, i = ag.topk(ag.tensor(x), 3, dim=1)
    tv, ti = torch.topk(tx, 3, dim=1)
    np.testing.assert_array_equal(v.data, tv.numpy())
    np.testing.assert_array_equal(i.data, ti.numpy())
    np.testing.assert_allclose(ag.einsum("ij,kj->ik", ag.tensor(x), ag.tensor(x)).data,
                               torch.einsum("ij,kj->ik", tx, tx).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(ag.tensor(x).repeat(2, 1, 3).data, tx.repeat(2, 1, 3).numpy())
    np.testing.assert_allclose(ag.tensor(x).norm(dim=1).data, tx.norm(dim=1).numpy(), rtol=1e-6)
