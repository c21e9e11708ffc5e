"""The stack tile behind the register-blocked products: values written are read back."""

import numba
import numpy as np
import pytest

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._registers import stack_empty

ROWS, COLS, SIZE = 3, 8, 24


@kernel()
def _row_sums_through_stack(a):
    # each row of a (ROWS x COLS) through a stack tile, then summed along the rows of the tile
    tile = numba.carray(stack_empty(SIZE, a.dtype), (ROWS, COLS))
    for r in range(ROWS):
        for c in range(COLS):
            tile[r, c] = a[r, c] * 2
    out = np.zeros(COLS, a.dtype)
    for r in range(ROWS):
        for c in range(COLS):
            out[c] += tile[r, c]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_stack_tile_holds_what_was_written(dtype):
    a = np.random.default_rng(0).standard_normal((ROWS, COLS)).astype(dtype)
    out = _row_sums_through_stack(a)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, 2 * a.sum(axis=0), rtol=1e-6)


def test_the_size_must_be_a_compile_time_constant():
    @numba.njit
    def runtime_size(n, a):
        return stack_empty(n, a.dtype)[0]

    with pytest.raises(numba.core.errors.TypingError, match="stack_empty"):
        runtime_size(4, np.zeros(4, np.float32))
