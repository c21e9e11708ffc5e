"""Every differentiable op: forward against NumPy, gradients against finite differences."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from opcheck import away_from, check_op, distinct

import alphagrad as ag
from alphagrad import functional as F

FAST = settings(max_examples=15, deadline=None)
seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
pairs = hnp.mutually_broadcastable_shapes(
    num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3
)
_erf = np.vectorize(math.erf)


def _uniform(low, high):
    return lambda rng, shape: rng.uniform(low, high, shape)


def _signed(rng, shape):  # |x| in [0.1, 2]: away from the kink at 0
    return rng.uniform(0.1, 2, shape) * rng.choice([-1, 1], shape)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {
    "neg": (lambda x: -x, lambda x: -x, _uniform(-2, 2)),
    "exp": (lambda x: x.exp(), np.exp, _uniform(-2, 2)),
    "log": (lambda x: x.log(), np.log, _uniform(0.5, 3)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, _uniform(0.5, 3)),
    "rsqrt": (lambda x: x.rsqrt(), lambda x: 1 / np.sqrt(x), _uniform(0.5, 3)),
    "reciprocal": (lambda x: x.reciprocal(), lambda x: 1 / x, _signed),
    "tanh": (lambda x: x.tanh(), np.tanh, _uniform(-3, 3)),
    "sigmoid": (lambda x: x.sigmoid(), _sigmoid, _uniform(-4, 4)),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0), _signed),
    "gelu": (F.gelu, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), _uniform(-3, 3)),
    "gelu_tanh": (
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        _uniform(-3, 3),
    ),
    "silu": (F.silu, lambda x: x * _sigmoid(x), _uniform(-3, 3)),
    "abs": (abs, np.abs, _signed),
    "clamp": (
        lambda x: x.clamp(-0.5, 0.7),
        lambda x: np.clip(x, -0.5, 0.7),
        lambda rng, shape: away_from(rng.uniform(-2, 2, shape), (-0.5, 0.7)),
    ),
    "clamp_min": (
        lambda x: x.clamp(min=0.3),
        lambda x: np.maximum(x, 0.3),
        lambda rng, shape: away_from(rng.uniform(-2, 2, shape), (0.3,)),
    ),
    "pow_int": (lambda x: x**3, lambda x: x**3, _uniform(-2, 2)),
    "pow_float": (lambda x: x**2.5, lambda x: x**2.5, _uniform(0.5, 2)),
    "pow_negative": (lambda x: x**-1.5, lambda x: x**-1.5, _uniform(0.5, 2)),
    "radd": (lambda x: 1.5 + x, lambda x: 1.5 + x, _uniform(-2, 2)),
    "rsub": (lambda x: 2 - x, lambda x: 2 - x, _uniform(-2, 2)),
    "rmul": (lambda x: 3 * x, lambda x: 3 * x, _uniform(-2, 2)),
    "rtruediv": (lambda x: 2 / x, lambda x: 2 / x, _signed),
    "rpow": (lambda x: 2**x, lambda x: 2**x, _uniform(-2, 2)),
    "scalar_sub_div": (lambda x: (x - 0.5) / 4, lambda x: (x - 0.5) / 4, _uniform(-2, 2)),
}


@pytest.mark.parametrize("name", UNARY)
@FAST
@given(shape=shapes, seed=seeds)
def test_unary(name, shape, seed):
    ag_fn, np_fn, sample = UNARY[name]
    check_op(ag_fn, np_fn, [sample(np.random.default_rng(seed), shape)])


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "pow": (lambda a, b: a**b, np.power),
    "maximum": (ag.maximum, np.maximum),
    "minimum": (ag.minimum, np.minimum),
}


@pytest.mark.parametrize("name", BINARY)
@FAST
@given(shapes=pairs, seed=seeds)
def test_binary_broadcasting(name, shapes, seed):
    rng = np.random.default_rng(seed)
    (sa, sb), _ = shapes
    a, b = rng.uniform(-2, 2, sa), _signed(rng, sb)
    if name == "pow":
        a = rng.uniform(0.5, 2, sa)
    if name in ("maximum", "minimum"):
        assume(np.min(np.abs(np.subtract(a, b)), initial=1.0) > 0.01)
    check_op(*BINARY[name], [a, b])


@FAST
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=seeds)
def test_where(shapes, seed):
    rng = np.random.default_rng(seed)
    sc, sa, sb = shapes.input_shapes
    cond = rng.random(sc) < 0.5
    check_op(
        lambda a, b: ag.where(ag.tensor(cond), a, b),
        lambda a, b: np.where(cond, a, b),
        [rng.standard_normal(sa), rng.standard_normal(sb)],
    )


MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((2, 2, 3), (2, 3, 4)),
    ((2, 1, 2, 3), (3, 3, 2)),
    ((3,), (2, 3, 1)),
    ((1, 2, 3), (3,)),
    ((2, 3, 4), (4, 2)),  # leading axes folded into one GEMM
    ((2, 1, 3, 4), (4, 5)),
]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    rng = np.random.default_rng(len(sa) * 10 + len(sb))
    check_op(lambda a, b: a @ b, np.matmul, [rng.standard_normal(sa), rng.standard_normal(sb)])


@FAST
@given(n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4), batch=pairs, seed=seeds)
def test_matmul_broadcast_batch(n, k, m, batch, seed):
    rng = np.random.default_rng(seed)
    (ba, bb), _ = batch
    check_op(
        ag.matmul, np.matmul, [rng.standard_normal(ba + (n, k)), rng.standard_normal(bb + (k, m))]
    )


@st.composite
def dims(draw, min_side=1):
    """A shape and a ``dim`` argument: None, an int (maybe negative) or a tuple of ints."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=min_side, max_side=4))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return shape, None
    if kind == "int":
        return shape, draw(st.integers(-nd, nd - 1))
    return shape, tuple(
        draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
    )


def _np_axis(dim):
    return tuple(dim) if isinstance(dim, tuple) else dim


REDUCTIONS = {
    "sum": (F.sum, np.sum),
    "mean": (F.mean, np.mean),
    "amax": (F.amax, np.max),
    "amin": (F.amin, np.min),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@FAST
@given(shape_dim=dims(), keepdim=st.booleans(), seed=seeds)
def test_reduction(name, shape_dim, keepdim, seed):
    (shape, dim), (ag_fn, np_fn) = shape_dim, REDUCTIONS[name]
    x = distinct(np.random.default_rng(seed), shape)
    check_op(
        lambda x: ag_fn(x, dim, keepdim),
        lambda x: np_fn(x, axis=_np_axis(dim), keepdims=keepdim),
        [x],
    )


@pytest.mark.parametrize("largest", [True, False])
@FAST
@given(shape_dim=dims(), keepdim=st.booleans(), seed=seeds)
def test_max_min_values_and_indices(largest, shape_dim, keepdim, seed):
    shape, dim = shape_dim
    x = distinct(np.random.default_rng(seed), shape)
    ag_fn, np_fn, np_arg = (F.max, np.max, np.argmax) if largest else (F.min, np.min, np.argmin)
    if isinstance(dim, int):
        _, indices = ag_fn(ag.tensor(x), dim, keepdim)
        np.testing.assert_array_equal(indices.data, np_arg(x, axis=dim, keepdims=keepdim))
        check_op(
            lambda x: ag_fn(x, dim, keepdim).values,
            lambda x: np_fn(x, axis=dim, keepdims=keepdim),
            [x],
        )
    else:
        check_op(
            lambda x: ag_fn(x, dim, keepdim), lambda x: np_fn(x, axis=dim, keepdims=keepdim), [x]
        )


def test_max_ties_share_the_gradient():
    x = ag.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0.5, 0.5, 0])


@pytest.mark.parametrize("name", ["var", "std"])
@FAST
@given(
    shape_dim=dims(min_side=2),
    keepdim=st.booleans(),
    correction=st.sampled_from([0, 1]),
    seed=seeds,
)
def test_var_std(name, shape_dim, keepdim, correction, seed):
    shape, dim = shape_dim
    ag_fn, np_fn = (F.var, np.var) if name == "var" else (F.std, np.std)
    check_op(
        lambda x: ag_fn(x, dim, keepdim=keepdim, correction=correction),
        lambda x: np_fn(x, axis=_np_axis(dim), ddof=correction, keepdims=keepdim),
        [np.random.default_rng(seed).standard_normal(shape)],
    )


@FAST
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), seed=seeds, data=st.data())
def test_movement(shape, seed, data):
    x = np.random.default_rng(seed).standard_normal(shape)
    nd = len(shape)
    perm = data.draw(st.permutations(range(nd)))
    d0, d1 = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    new_dim = data.draw(st.integers(-nd - 1, nd))
    start = data.draw(st.integers(0, nd - 1))
    end = data.draw(st.integers(start, nd - 1))
    n = x.size
    cases = [
        (lambda t: t.reshape(n), lambda a: a.reshape(n)),
        (lambda t: t.view(-1, shape[-1]), lambda a: a.reshape(-1, shape[-1])),
        (lambda t: t.permute(*perm), lambda a: a.transpose(perm)),
        (lambda t: t.transpose(d0, d1), lambda a: np.swapaxes(a, d0, d1)),
        (lambda t: t.T, lambda a: a.transpose()),
        (lambda t: t.expand(2, *shape), lambda a: np.broadcast_to(a, (2, *shape))),
        (lambda t: t.squeeze(), lambda a: a.squeeze()),
        (lambda t: t.unsqueeze(new_dim), lambda a: np.expand_dims(a, new_dim)),
        (
            lambda t: t.flatten(start, end),
            lambda a: a.reshape(shape[:start] + (-1,) + shape[end + 1 :]),
        ),
        (lambda t: t.T.contiguous(), lambda a: np.ascontiguousarray(a.transpose())),
    ]
    for ag_fn, np_fn in cases:
        check_op(ag_fn, np_fn, [x])


def test_expand_size_one_dims_and_squeeze_dim():
    rng = np.random.default_rng(0)
    check_op(
        lambda t: t.expand(3, -1, 4),
        lambda a: np.broadcast_to(a, (3, 2, 4)),
        [rng.standard_normal((1, 2, 1))],
    )
    check_op(lambda t: t.squeeze(0), lambda a: a.squeeze(0), [rng.standard_normal((1, 2, 1))])
    check_op(
        lambda t: t.squeeze((0, 2)), lambda a: a.squeeze((0, 2)), [rng.standard_normal((1, 2, 1))]
    )


INDICES = [
    1,
    -1,
    slice(None),
    slice(1, None),
    slice(None, None, 2),
    (0, 1),
    (slice(None), 2),
    (None, 1),
    (Ellipsis, 0),
    (1, Ellipsis, None),
    (slice(0, 2), None, slice(None, None, -1)),
    np.array([0, 2, 2, 0]),
    (np.array([1, 1]), np.array([0, 3])),
    (slice(None), np.array([3, 3, 1])),
    np.array([True, False, True]),
    (np.array([False, True, True]), 1),
]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_indexing(index):
    x = np.random.default_rng(1).standard_normal((3, 4, 2))
    check_op(lambda t: t[index], lambda a: a[index], [x])


def test_indexing_with_tensor_indices_and_bool_mask_tensor():
    x = np.random.default_rng(2).standard_normal((3, 4))
    idx, mask = ag.tensor([2, 0, 2]), ag.tensor(x > 0)
    check_op(lambda t: t[idx], lambda a: a[[2, 0, 2]], [x])
    check_op(lambda t: t[mask], lambda a: a[x > 0], [x])


@FAST
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
    count=st.integers(1, 3),
    seed=seeds,
    data=st.data(),
)
def test_cat_stack(shape, count, seed, data):
    rng = np.random.default_rng(seed)
    nd = len(shape)
    dim = data.draw(st.integers(-nd, nd - 1))
    lengths = [data.draw(st.integers(1, 3)) for _ in range(count)]
    cat_inputs = [
        rng.standard_normal(shape[: dim % nd] + (n,) + shape[dim % nd + 1 :]) for n in lengths
    ]
    check_op(lambda *ts: ag.cat(ts, dim), lambda *a: np.concatenate(a, dim), cat_inputs)
    new_dim = data.draw(st.integers(-nd - 1, nd))
    stack_inputs = [rng.standard_normal(shape) for _ in range(count)]
    check_op(lambda *ts: ag.stack(ts, new_dim), lambda *a: np.stack(a, new_dim), stack_inputs)


@FAST
@given(n=st.integers(1, 7), size=st.integers(1, 4), seed=seeds)
def test_split_chunk(n, size, seed):
    x = np.random.default_rng(seed).standard_normal((2, n))

    def weigh(pieces):  # each piece scaled differently so every piece's gradient is checked
        return [p * (k + 1.0) for k, p in enumerate(pieces)]

    bounds = list(range(size, n, size))
    check_op(
        lambda t: ag.cat(weigh(t.split(size, 1)), 1),
        lambda a: np.concatenate(weigh(np.split(a, bounds, 1)), 1),
        [x],
    )
    check_op(
        lambda t: ag.cat(weigh(F.split(t, [1, n - 1], dim=-1)), 1),
        lambda a: np.concatenate(weigh(np.split(a, [1], 1)), 1),
        [x],
    )
    step = -(-n // size)
    check_op(
        lambda t: ag.cat(weigh(t.chunk(size, 1)), 1),
        lambda a: np.concatenate(weigh(np.split(a, list(range(step, n, step)), 1)), 1),
        [x],
    )
    assert len(ag.zeros(2, n).chunk(size, 1)) == len(range(0, n, step))


@pytest.mark.parametrize("diagonal", [-1, 0, 2])
def test_tril_triu_masked_fill(diagonal):
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    check_op(lambda t: t.tril(diagonal), lambda a: np.tril(a, diagonal), [x])
    check_op(lambda t: t.triu(diagonal), lambda a: np.triu(a, diagonal), [x])
    mask = np.random.default_rng(diagonal + 5).random((3, 1)) < 0.5
    check_op(lambda t: t.masked_fill(ag.tensor(mask), -2.0), lambda a: np.where(mask, -2.0, a), [x])


def test_pow_zero_has_zero_gradient_at_zero():
    x = ag.tensor([0.0, 2.0], dtype="float64", requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0])
