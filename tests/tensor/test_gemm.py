"""``kernels.matmul``: GEMMs cut into pieces for the kernels' threads, against NumPy in float64."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphagrad.tensor import blas, get_num_threads, set_num_threads
from alphagrad.tensor.kernels import gemm, matmul, matmul_gelu, matmuls, reference


@pytest.fixture(params=["serial", "parallel-allthreads"])
def threads(request, monkeypatch):
    """Every product is cut into pieces when parallel (the size threshold set to zero). Set once
    for all of a hypothesis test's examples, which is what it is for."""
    before = get_num_threads()
    if request.param == "serial":
        set_num_threads(1)
    else:
        monkeypatch.setattr(gemm, "PARALLEL_MIN_WORK", 0)
        set_num_threads(numba.config.NUMBA_NUM_THREADS)
    yield
    set_num_threads(before)


LAYOUTS = ["contiguous", "transposed", "strided rows", "reversed rows"]


def laid_out(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` (same values) in a memory layout that BLAS takes directly, or (reversed) one that it
    does not."""
    if layout == "transposed":  # column-major last two axes
        return np.swapaxes(np.swapaxes(x, -1, -2).copy(), -1, -2)
    if layout == "strided rows":  # every other row of a twice-as-tall array
        wide = np.zeros(x.shape[:-2] + (2 * x.shape[-2], x.shape[-1]), x.dtype)
        wide[..., ::2, :] = x
        return wide[..., ::2, :]
    if layout == "reversed rows":
        return np.flip(np.flip(x, -2).copy(), -2)
    return x


@st.composite
def operands(draw):
    m, k, n = (draw(st.integers(1, 40)) for _ in range(3))
    batch = draw(st.sampled_from([((), ()), ((3,), ()), ((), (2,)), ((4,), (4,)), ((1,), (3,)),
                                  ((2, 1), (3,)), ((2, 3), (2, 3))]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layouts = (draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(LAYOUTS)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.standard_normal(batch[0] + (m, k)).astype(dtype)
    b = rng.standard_normal(batch[1] + (k, n)).astype(dtype)
    return laid_out(a, layouts[0]), laid_out(b, layouts[1])


@given(operands(), st.booleans(), st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_matmul_matches_numpy_in_float64(threads, pair, with_bias, with_addend):
    a, b = pair
    bias = np.linspace(-1, 2, b.shape[-1]).astype(a.dtype) if with_bias else None
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    addend = np.arange(np.prod(shape)).reshape(shape).astype(a.dtype) if with_addend else None
    out = matmul(a, b, bias, addend)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64)) + (0 if bias is None else bias)
    expected += 0 if addend is None else addend
    assert out.shape == expected.shape and out.dtype == a.dtype
    tol = 1e-4 if a.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * np.sqrt(a.shape[-1]))


@st.composite
def gradient_products(draw):
    """A layer's two gradient products, dx = g @ w and dw = gᵀ @ x (equal work: they run side
    by side), sometimes beside a third product of other sizes or dtype."""
    m, k, n = (draw(st.integers(1, 40)) for _ in range(3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, w, g = (rng.standard_normal(shape).astype(dtype) for shape in ((m, k), (n, k), (m, n)))
    products = [(g, laid_out(w, draw(st.sampled_from(LAYOUTS)))), (g.T, x)]
    if draw(st.booleans()):
        other = draw(st.sampled_from([np.float32, np.float64]))
        products.insert(draw(st.integers(0, 2)), tuple(rng.standard_normal(s).astype(other)
                                                       for s in ((3, m, 5), (5, 2))))
    return products


@given(gradient_products())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_matmuls_match_numpy_in_float64(threads, products):
    for (a, b), out in zip(products, matmuls(*products), strict=True):
        expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
        assert out.shape == expected.shape and out.dtype == a.dtype
        tol = 1e-4 if a.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * np.sqrt(a.shape[-1]))


@given(operands(), st.booleans(), st.sampled_from(["tanh", "none"]))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_matmul_gelu_matches_numpy_in_float64(threads, pair, with_bias, approximate):
    a, b = pair
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])[:a.shape[-1]]  # 2-D, as a Linear's
    bias = np.linspace(-2, 2, b.shape[-1]).astype(a.dtype) if with_bias else None
    h, out = matmul_gelu(a, b, bias, approximate)
    expected = a.astype(np.float64) @ b + (0 if bias is None else bias)
    tol = 1e-4 if a.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(h, expected, rtol=tol, atol=tol * np.sqrt(a.shape[-1]))
    np.testing.assert_allclose(out, reference.gelu_forward(expected, approximate), rtol=tol,
                               atol=tol * np.sqrt(a.shape[-1]))


@pytest.fixture
def scipy_blas(monkeypatch):
    """SciPy's own OpenBLAS, whose CBLAS takes 32-bit integers, as the BLAS GEMMs are cut for."""
    scipy = pytest.importorskip("scipy")
    for path in sorted((Path(scipy.__file__).parent.parent / "scipy.libs").glob("*openblas*")):
        found = blas.load(str(path))
        if found is not None and found.sgemm and not found.ilp64:
            found.set_num_threads(1)  # one thread per piece, as alphagrad keeps NumPy's BLAS
            monkeypatch.setattr(gemm, "BLAS", found)
            return found
    pytest.skip("SciPy carries no 32-bit-integer OpenBLAS")


@given(operands(), st.booleans())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_32_bit_integer_blas_gives_the_same_products(threads, scipy_blas, pair, with_bias):
    """The plain CBLAS names of conda's and distributions' NumPy take 32-bit integers."""
    a, b = pair
    bias = np.linspace(-1, 2, b.shape[-1]).astype(a.dtype) if with_bias else None
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64)) + (0 if bias is None else bias)
    tol = 1e-4 if a.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(matmul(a, b, bias), expected, rtol=tol,
                               atol=tol * np.sqrt(a.shape[-1]))


def test_numpys_own_blas_is_found_with_scipy_imported_first():
    """SciPy's wheels carry an OpenBLAS of their own. Loaded before alphagrad, it must not be
    taken for NumPy's: its pool would be set instead of NumPy's and the GEMMs left to NumPy."""
    pytest.importorskip("scipy")
    own = sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*"))
    if not own:
        pytest.skip("this NumPy carries no OpenBLAS of its own")
    script = textwrap.dedent(f"""
        import ctypes
        import scipy.linalg
        from alphagrad.tensor import blas, threads
        numpys = ctypes.CDLL({str(own[0])!r}).scipy_cblas_sgemm64_
        print(blas.BLAS.sgemm == ctypes.cast(numpys, ctypes.c_void_p).value, threads.one_pool())
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"], result.stdout


def test_large_products_are_cut_at_the_default_threshold():
    """A GPT-sized product and its weight gradient (a transposed operand), at the default size
    threshold, on every thread."""
    before = get_num_threads()
    set_num_threads(numba.config.NUMBA_NUM_THREADS)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 192)).astype(np.float32)
    w = rng.standard_normal((192, 768)).astype(np.float32)
    g = rng.standard_normal((1024, 768)).astype(np.float32)
    try:
        for a, b in ((x, w), (x.T, g), (g, w.T)):
            np.testing.assert_allclose(matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4,
                                       atol=1e-3)
        bias = rng.standard_normal(768).astype(np.float32)  # blocks of rows, each finished in cache
        h, out = matmul_gelu(x, w, bias)
        np.testing.assert_allclose(h, x.astype(np.float64) @ w + bias, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(out, reference.gelu_forward(x.astype(np.float64) @ w + bias),
                                   rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(matmul(x, w, addend=g), x.astype(np.float64) @ w + g,
                                   rtol=1e-4, atol=1e-3)
        dx, dw = matmuls((g, w.T), (x.T, g))  # side by side
        np.testing.assert_allclose(dx, g.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(dw, x.T.astype(np.float64) @ g, rtol=1e-4, atol=1e-3)
    finally:
        set_num_threads(before)


def test_other_operands_follow_numpys_rules():
    """1-D operands, integer and mixed dtypes: NumPy's matmul rules, checked on worked answers."""
    a = np.arange(6.0).reshape(2, 3)  # [[0, 1, 2], [3, 4, 5]]
    np.testing.assert_array_equal(matmul(a, np.arange(3.0)), [5.0, 14.0])  # 1-D: a vector back
    ints = np.arange(6).reshape(2, 3)
    product = matmul(ints, ints.T)
    assert product.dtype.kind == "i"
    np.testing.assert_array_equal(product, [[5, 14], [14, 50]])
    mixed = matmul(np.ones((2, 3), np.float32), np.ones((3, 1), np.float64))
    assert mixed.dtype == np.float64 and np.array_equal(mixed, [[3.0], [3.0]])
    with pytest.raises(ValueError):
        matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))


def test_a_forked_child_trains_on_one_thread():
    """GNU OpenMP cannot run a parallel loop in a child forked after the parent used it (the
    child would be stopped); alphagrad's child runs its kernels and products on one thread and
    gets the parent's answer."""
    script = textwrap.dedent("""
        import os
        import numpy as np
        import alphagrad as ag
        from alphagrad import nn

        def step():
            ag.manual_seed(0)
            config = nn.GPTConfig(block_size=32, vocab_size=50, n_layer=1, n_head=2, n_embd=64)
            model = nn.GPT(config)
            idx = np.random.default_rng(0).integers(0, 50, (16, 32))
            _, loss = model(idx, idx)
            loss.backward()
            return loss.item(), model.lm_head.weight.grad.numpy().copy()

        ag.set_num_threads(2)
        parent = step()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            loss, grad = step()
            same = loss == parent[0] and np.allclose(grad, parent[1], rtol=1e-5, atol=1e-6)
            os.write(write, b"same" if same and ag.get_num_threads() == 1 else b"differs")
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        print(os.read(read, 16).decode() or "nothing", status)
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["same", "0"], result.stdout + result.stderr
