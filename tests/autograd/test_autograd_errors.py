"""User mistakes get specific errors that name what is wrong."""

import numpy as np
import pytest

import alphagrad as ag
from alphagrad import functional as F


def test_mismatched_shapes_name_both_shapes():
    a, b = ag.ones(2, 3), ag.ones(4, 5)
    for op in (lambda: a + b, lambda: a * b, lambda: a - b, lambda: a / b):
        with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
            op()
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ag.cat([a, b])
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ag.stack([a, b])
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(7,\)"):
        a.reshape(7)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(a, ag.ones(4, 5))


def test_float_index():
    with pytest.raises(TypeError, match="float"):
        ag.ones(3)[1.5]
    with pytest.raises(TypeError, match="float64"):
        ag.ones(3)[np.array([0.5])]


def test_out_of_range_index_names_the_shape():
    with pytest.raises(IndexError, match=r"\(3,\)"):
        ag.ones(3)[5]


def test_backward_on_non_scalar_needs_gradient():
    y = ag.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        y.backward(np.ones(3))


def test_backward_twice_through_a_freed_graph():
    x = ag.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ag.ones(2).sum().backward()


@pytest.mark.parametrize(
    "op",
    [
        lambda x: x.sum(dim=3),
        lambda x: x.mean(dim=-4),
        lambda x: x.max(dim=2),
        lambda x: x.transpose(0, 5),
        lambda x: x.softmax(dim=2),
        lambda x: x.unsqueeze(4),
        lambda x: ag.cat([x, x], dim=2),
    ],
)
def test_bad_dims(op):
    with pytest.raises(IndexError, match="out of range"):
        op(ag.ones(2, 3))


def test_bad_dim_type_and_permutation():
    with pytest.raises(TypeError, match="dim"):
        ag.ones(2, 3).sum(dim=1.0)
    with pytest.raises(ValueError, match="permutation"):
        ag.ones(2, 3).permute(0, 0)


def test_bad_nn_arguments():
    with pytest.raises(TypeError, match="integers"):
        F.cross_entropy(ag.ones(2, 3), ag.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        F.cross_entropy(ag.ones(2, 3), ag.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(ag.ones(2), approximate="fast")
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(ag.ones(2), p=1.5)
    with pytest.raises(TypeError, match="bool"):
        ag.ones(2).masked_fill(ag.tensor([1, 0]), 0.0)
