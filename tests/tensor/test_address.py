"""Tables of array addresses: what NumPy says of each array, and the elements read back."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from alphagrad.tensor.kernels._address import address, flat_at, table


def _layouts():
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((2, 5, 3, 4, 6)).astype(np.float32)
    return {
        "contiguous": np.ascontiguousarray(qkv[:, :, 0]),
        "slice of a qkv buffer": qkv[:, :, 1].transpose(0, 2, 1, 3),
        "every other row": qkv[:, ::2, 2],
        "one element": qkv[:1, :1, 0, :1, :1],
        "broadcast": np.broadcast_to(qkv[0, 0, 0, 0], (2, 5, 4, 6)),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_row_says_where_the_array_starts_what_it_spans_and_its_strides(dtype):
    arrays = [a.astype(dtype) if a.dtype != dtype else a for a in _layouts().values()]
    places, strides = table(*arrays)
    for a, (start, span), row in zip(arrays, places, strides):
        assert start == a.__array_interface__["data"][0] == address(a)
        last = np.unravel_index(a.size - 1, a.shape)  # the element furthest from the first
        assert span == 1 + sum(i * st for i, st in zip(last, a.strides)) // a.itemsize
        assert tuple(row) == a.strides


def test_a_row_views_the_array_it_describes():
    for name, a in _layouts().items():
        places, strides = table(a)
        buffer = flat_at(places[0, 0], places[0, 1], np.float32(0))
        view = as_strided(buffer, a.shape, tuple(strides[0]))
        np.testing.assert_array_equal(view, a, err_msg=name)
