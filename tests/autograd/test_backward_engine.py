"""The backward engine: accumulation, long chains, grad modes, graph lifetime, grad ownership, dtypes."""

import numpy as np
import pytest

import alphagrad as ag


def test_shared_subexpression_accumulates():
    x = ag.tensor([1.0, -2.0, 3.0], dtype="float64", requires_grad=True)
    y = x * 3.0
    (y * y + y).sum().backward()  # d/dx (9x² + 3x) = 18x + 3
    np.testing.assert_allclose(x.grad.data, 18 * x.data + 3)
    z = ag.tensor(2.0, dtype="float64", requires_grad=True)
    (z * z * z).backward()
    assert z.grad.item() == pytest.approx(12.0)


def test_ten_thousand_op_chain():
    x = ag.tensor(1.0, dtype="float64", requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-9)


def test_no_grad_records_nothing_and_enable_grad_inside_it():
    x = ag.ones(3, requires_grad=True)
    with ag.no_grad():
        y = x * 2
        assert not ag.is_grad_enabled()
        with ag.enable_grad():
            z = x * 2
    assert ag.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None

    @ag.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad and ag.is_grad_enabled()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(KeyError), ag.no_grad():
        raise KeyError("boom")
    assert ag.is_grad_enabled()


def test_retain_graph_allows_a_second_backward():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.data.copy()
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * first, rtol=1e-6)


def test_grads_accumulate_until_reset():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3 + 2, 3 + 4])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3, 3])


def test_leaf_grads_never_alias():
    a, b = ag.ones(3, requires_grad=True), ag.ones(3, requires_grad=True)
    (a + b).sum().backward()
    a.grad.data *= 10
    np.testing.assert_array_equal(b.grad.data, [1, 1, 1])
    c, d = ag.ones(2, 3, requires_grad=True), ag.ones(2, 3, requires_grad=True)
    out = c + d
    out.backward(np.ones((2, 3)))
    c.grad.data[0, 0] = 5
    assert d.grad.data[0, 0] == 1
    e = ag.ones(4, requires_grad=True)
    g = np.ones(4, np.float32)
    (e * 1.0).backward(g)  # the caller's gradient array is not handed out as .grad either
    e.grad.data[0] = 7
    assert g[0] == 1


def test_non_leaf_grad_only_when_retained():
    x = ag.ones(2, requires_grad=True)
    y = x * 2
    z = y * 3
    y.retain_grad()
    z.sum().backward()
    np.testing.assert_array_equal(y.grad.data, [3, 3])
    assert z.grad is None and not z.is_leaf and x.is_leaf


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        ag.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="float"):
        ag.arange(3).requires_grad_()


def test_mixed_float32_float64_gives_each_input_its_own_dtype_grad():
    a = ag.ones(3, dtype="float32", requires_grad=True)
    b = ag.ones(3, dtype="float64", requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_detach_cuts_the_graph():
    x = ag.ones(2, requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.grad_fn is None
    (x * y).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2, 2])


def test_inputs_that_need_no_grad_get_none():
    x, w = ag.ones(2), ag.ones(2, requires_grad=True)
    (x * w).sum().backward()
    assert x.grad is None and w.grad is not None


def test_int_with_float_computes_in_the_float_dtype():
    i = ag.arange(4)
    assert (i * 1.5).dtype == np.float32 and (1.5 + i).dtype == np.float32
    assert (i - ag.ones(4, dtype="float64")).dtype == np.float64
    assert (i * 2).dtype == np.int64 and (i / 2).dtype == np.float32
    np.testing.assert_array_equal((i * 1.5).data, [0, 1.5, 3, 4.5])


def test_post_accumulate_grad_hook_sees_each_leafs_final_gradient_once():
    x = ag.tensor([1.0, -2.0, 3.0], dtype="float64", requires_grad=True)
    w = ag.tensor([0.5, 0.25, 2.0], dtype="float64", requires_grad=True)
    seen = {"x": [], "w": []}
    handle = x.register_post_accumulate_grad_hook(lambda t: seen["x"].append(t.grad.data.copy()))
    w.register_post_accumulate_grad_hook(lambda t: seen["w"].append(t.grad.data.copy()))
    (x * w + x * x).sum().backward()  # x feeds two paths: the hook waits for both
    assert len(seen["x"]) == len(seen["w"]) == 1
    np.testing.assert_allclose(seen["x"][0], w.data + 2 * x.data)
    np.testing.assert_allclose(seen["w"][0], x.data)
    (x * 2.0).sum().backward()  # accumulated onto the first gradient: the hook sees the sum
    np.testing.assert_allclose(seen["x"][1], w.data + 2 * x.data + 2.0)
    handle.remove()
    (x * 2.0).sum().backward()
    assert len(seen["x"]) == 2


def test_post_accumulate_grad_hook_is_for_leaves_that_require_grad():
    x = ag.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="only a leaf tensor that requires grad"):
        (x * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="only a leaf tensor that requires grad"):
        ag.ones(2).register_post_accumulate_grad_hook(print)
