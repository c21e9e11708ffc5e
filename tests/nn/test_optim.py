"""Optimizers and clip_grad_norm_ against NumPy updates written from the algorithms' math."""

import math

import numpy as np
import pytest

import alphagrad as ag
from alphagrad import optim
from alphagrad.nn.utils import clip_grad_norm_

STEPS = 5


def make_params(seed, shapes=((3, 4), (5,)), dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [ag.tensor(rng.standard_normal(s), dtype=dtype, requires_grad=True) for s in shapes]


def grads_for(seed, params, steps=STEPS):
    """A fixed sequence of gradients: step -> one array per parameter."""
    rng = np.random.default_rng(seed + 100)
    return [[rng.standard_normal(p.shape) for p in params] for _ in range(steps)]


def run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = ag.tensor(g, dtype=p.dtype)
        opt.step()
    return [p.data.copy() for p in params]


def sgd_reference(w, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    w, buf = w.copy(), None
    for g in grads:
        d = g + weight_decay * w
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        w = w - lr * d
    return w


def adam_reference(w, grads, lr, b1, b2, eps, weight_decay, decoupled):
    w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


@pytest.mark.parametrize(
    "momentum, dampening, weight_decay, nesterov",
    [
        (0.0, 0.0, 0.0, False),
        (0.9, 0.0, 0.0, False),
        (0.9, 0.3, 0.01, False),
        (0.8, 0.0, 0.05, True),
    ],
)
def test_sgd_matches_numpy(momentum, dampening, weight_decay, nesterov):
    params = make_params(0)
    start = [p.data.copy() for p in params]
    grads = grads_for(0, params)
    opt = optim.SGD(
        params,
        lr=0.1,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )
    got = run(opt, params, grads)
    for i, w0 in enumerate(start):
        want = sgd_reference(
            w0, [g[i] for g in grads], 0.1, momentum, dampening, weight_decay, nesterov
        )
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cls, weight_decay", [(optim.Adam, 0.0), (optim.Adam, 0.1), (optim.AdamW, 0.1)]
)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_adam_family_matches_numpy(cls, weight_decay, dtype, tol):
    params = make_params(1, dtype=dtype)
    start = [p.data.astype(np.float64) for p in params]
    grads = grads_for(1, params)
    opt = cls(params, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay)
    got = run(opt, params, grads)
    for i, w0 in enumerate(start):
        want = adam_reference(
            w0,
            [g[i].astype(dtype).astype(np.float64) for g in grads],
            0.01,
            0.8,
            0.95,
            1e-6,
            weight_decay,
            decoupled=cls is optim.AdamW,
        )
        assert got[i].dtype == dtype
        np.testing.assert_allclose(got[i], want, rtol=tol, atol=tol)


def test_adamw_default_hyperparameters_follow_pytorch():
    (w,) = make_params(2, shapes=((4,),))
    opt = optim.AdamW([w])
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["weight_decay"] == 1e-2
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and opt.param_groups[0]["eps"] == 1e-8
    assert optim.Adam([w]).param_groups[0]["weight_decay"] == 0.0


def test_param_groups_with_their_own_lr():
    a, b = make_params(3)
    start = [a.data.copy(), b.data.copy()]
    grads = grads_for(3, [a, b])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    got = run(opt, [a, b], grads)
    np.testing.assert_allclose(
        got[0], sgd_reference(start[0], [g[0] for g in grads], 0.1), rtol=1e-12
    )
    np.testing.assert_allclose(
        got[1], sgd_reference(start[1], [g[1] for g in grads], 0.5, 0.9), rtol=1e-12
    )
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_parameters_without_grad_are_left_alone():
    a, b = make_params(4)
    frozen = b.data.copy()
    opt = optim.AdamW([a, b], lr=0.1)
    a.grad = ag.tensor(np.ones(a.shape))
    opt.step()
    np.testing.assert_array_equal(b.data, frozen)
    assert b not in opt.state and opt.state[a]["step"] == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
        lambda ps: optim.AdamW(ps, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1),
    ],
)
def test_state_dict_round_trip_continues_identically(make):
    grads = grads_for(5, make_params(5), steps=6)
    straight = make_params(5)
    want = run(make(straight), straight, grads)

    first = make_params(5)
    opt1 = make(first)
    after3 = run(opt1, first, grads[:3])
    saved = opt1.state_dict()
    run(opt1, first, grads[3:4])  # the snapshot must not follow later steps

    resumed = make_params(5)
    for p, w in zip(resumed, after3):
        p.data = w
    opt2 = make(resumed)
    opt2.load_state_dict(saved)
    for got, w in zip(run(opt2, resumed, grads[3:]), want):
        np.testing.assert_array_equal(got, w)


def test_state_dict_is_positional_and_holds_hyperparameters():
    a, b = make_params(6)
    opt = optim.AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=0.01)
    run(opt, [a, b], grads_for(6, [a, b], steps=2))
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert [g["weight_decay"] for g in sd["param_groups"]] == [0.01, 0.0]
    assert sd["state"][1]["step"] == 2 and sd["state"][1]["exp_avg"].shape == b.shape
    assert isinstance(sd["state"][0]["exp_avg_sq"], np.ndarray)


def test_load_state_dict_checks_structure_and_shapes():
    a, b = make_params(7)
    opt = optim.Adam([a, b])
    run(opt, [a, b], grads_for(7, [a, b], steps=1))
    sd = opt.state_dict()
    c, d = make_params(7, shapes=((3, 4), (6,)))
    with pytest.raises(ValueError, match=r"\(5,\).*\(6,\)"):
        optim.Adam([c, d]).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups, this optimizer has 2"):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 holds 2"):
        optim.Adam([a]).load_state_dict(sd)


def test_bad_arguments_raise():
    (w,) = make_params(8, shapes=((2,),))
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([w, w], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([ag.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="unknown options"):
        optim.SGD([{"params": [w], "momentun": 0.9}], lr=0.1)


def test_zero_grad():
    a, b = make_params(9)
    opt = optim.SGD([a, b], lr=0.1)
    (a.sum() + b.sum()).backward()
    grad_array = a.grad.data
    opt.zero_grad(set_to_none=False)
    assert np.all(grad_array == 0) and a.grad.data is grad_array
    opt.zero_grad()
    assert a.grad is None and b.grad is None


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_numpy(norm_type, max_norm):
    params = make_params(10, shapes=((4, 3), (7,), (2, 2, 2)), dtype=np.float32)
    rng = np.random.default_rng(10)
    raw = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    for p, g in zip(params, raw):
        p.grad = ag.tensor(g.copy())
    flat = np.concatenate([g.astype(np.float64).ravel() for g in raw])
    total = (
        np.max(np.abs(flat))
        if norm_type == math.inf
        else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    )
    got = clip_grad_norm_(params, max_norm, norm_type)
    assert isinstance(got, ag.Tensor) and got.shape == () and got.dtype == np.float32  # as torch
    assert float(got) == pytest.approx(total, rel=1e-5)
    scale = min(1.0, max_norm / (total + 1e-6))
    for p, g in zip(params, raw):
        np.testing.assert_allclose(p.grad.data, g * scale, rtol=1e-6)


def test_clip_grad_norm_skips_missing_grads_and_takes_one_tensor():
    a, b = make_params(11)
    a.grad = ag.tensor(np.full(a.shape, 2.0))
    assert clip_grad_norm_([a, b], 1.0).item() == pytest.approx(math.sqrt(12 * 4.0))
    assert np.linalg.norm(a.grad.data) == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm_(b, 1.0).item() == 0.0


def test_clip_grad_norm_returns_the_gradients_dtype_as_torch():
    torch = pytest.importorskip("torch")
    grad = np.random.default_rng(12).standard_normal(5) * 3
    for dtype, tdtype in [("float32", torch.float32), ("float64", torch.float64)]:
        p = ag.nn.Parameter(ag.zeros(5, dtype=dtype))
        p.grad = ag.tensor(grad, dtype=dtype)
        t = torch.nn.Parameter(torch.zeros(5, dtype=tdtype))
        t.grad = torch.tensor(grad, dtype=tdtype)
        got, want = clip_grad_norm_([p], 1.0), torch.nn.utils.clip_grad_norm_([t], 1.0)
        assert isinstance(got, ag.Tensor) and got.shape == () and got.dtype == np.dtype(dtype)
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
        np.testing.assert_allclose(p.grad.data, t.grad.numpy(), rtol=1e-5)
