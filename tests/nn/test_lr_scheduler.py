"""``alphagrad.optim.lr_scheduler`` against closed forms and, where installed, PyTorch's own."""

import math

import numpy as np
import pytest

import alphagrad as ag
from alphagrad.optim import lr_scheduler as sched

STEPS = 40


def _optimizer(lrs=(0.1, 0.03)):
    groups = [{"params": [ag.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return ag.optim.SGD(groups, lr=lrs[0])


SCHEDULERS = {
    "lambda": (lambda o: sched.LambdaLR(o, lambda e: 0.95**e + 0.01 * (e % 3)),
               lambda base, e: base * (0.95**e + 0.01 * (e % 3))),
    "step": (lambda o: sched.StepLR(o, step_size=7, gamma=0.5), lambda base, e: base * 0.5 ** (e // 7)),
    "exponential": (lambda o: sched.ExponentialLR(o, gamma=0.9), lambda base, e: base * 0.9**e),
    "cosine": (lambda o: sched.CosineAnnealingLR(o, T_max=25, eta_min=0.001),
               lambda base, e: 0.001 + (base - 0.001) * (1 + math.cos(math.pi * e / 25)) / 2),
    "linear": (lambda o: sched.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
               lambda base, e: base * (0.1 + 0.9 * min(e, 10) / 10)),
}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_closed_form_every_group_and_resume(name):
    make, want = SCHEDULERS[name]
    opt = _optimizer()
    s = make(opt)
    for e in range(STEPS):
        assert s.get_last_lr() == pytest.approx([want(0.1, e), want(0.03, e)], rel=1e-12)
        assert [g["lr"] for g in opt.param_groups] == s.get_last_lr()
        if e == 17:
            resumed = make(_optimizer())
            resumed.load_state_dict(s.state_dict())
            assert resumed.get_last_lr() == s.get_last_lr()
        s.step()
    for _ in range(STEPS - 17):
        resumed.step()
    assert resumed.get_last_lr() == s.get_last_lr()


def test_sequential_warmup_then_cosine():
    opt = _optimizer((1.0,))
    warmup = sched.LinearLR(opt, start_factor=0.25, total_iters=4)
    cosine = sched.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    s = sched.SequentialLR(opt, [warmup, cosine], milestones=[4])
    got = []
    for _ in range(16):
        got.append(s.get_last_lr()[0])
        s.step()
    want = [0.25 + 0.75 * e / 4 for e in range(4)]
    want += [0.1 + 0.9 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(12)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="2 schedulers need 1 milestones"):
        opt = _optimizer()
        sched.SequentialLR(opt, [sched.StepLR(opt, 2), sched.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="2 lr_lambdas for 1 parameter groups"):
        sched.LambdaLR(_optimizer((0.1,)), [lambda e: 1.0, lambda e: 1.0])
    with pytest.raises(TypeError, match="expected an Optimizer"):
        sched.StepLR("adam", 3)


def test_same_lrs_as_torch():
    torch = pytest.importorskip("torch")
    tsched = torch.optim.lr_scheduler

    def torch_opt():
        return torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in (0.1, 0.03)],
                               lr=0.1)

    pairs = [
        (lambda o: sched.StepLR(o, 7, 0.5), lambda o: tsched.StepLR(o, 7, 0.5)),
        (lambda o: sched.ExponentialLR(o, 0.9), lambda o: tsched.ExponentialLR(o, 0.9)),
        (lambda o: sched.CosineAnnealingLR(o, 25, 0.001), lambda o: tsched.CosineAnnealingLR(o, 25, 0.001)),
        (lambda o: sched.LinearLR(o, 0.1, 1.0, 10), lambda o: tsched.LinearLR(o, 0.1, 1.0, 10)),
        (lambda o: sched.LambdaLR(o, lambda e: 1 / (e + 1)), lambda o: tsched.LambdaLR(o, lambda e: 1 / (e + 1))),
        (lambda o: sched.SequentialLR(o, [sched.LinearLR(o, 0.1, total_iters=5), sched.CosineAnnealingLR(o, 30)], [5]),
         lambda o: tsched.SequentialLR(o, [tsched.LinearLR(o, 0.1, total_iters=5), tsched.CosineAnnealingLR(o, 30)],
                                       [5])),
    ]
    for ours_of, theirs_of in pairs:
        ours, theirs = ours_of(_optimizer()), theirs_of(topt := torch_opt())
        for _ in range(STEPS):
            np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-9, atol=1e-12)
            topt.step()
            ours.step()
            theirs.step()
