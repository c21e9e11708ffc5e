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


def _momentum_optimizer(kind):
    groups = [{"params": [ag.zeros(2, requires_grad=True)], "lr": lr} for lr in (0.1, 0.03)]
    return ag.optim.SGD(groups, lr=0.1, momentum=0.9) if kind == "sgd" else ag.optim.AdamW(groups)


def test_one_cycle_known_points_and_momentum():
    opt = _momentum_optimizer("adam")
    s = sched.OneCycleLR(opt, max_lr=1.0, total_steps=100)  # peak at step 29, floor at 99
    lrs, beta1 = [], []
    for step in range(100):
        lrs.append(s.get_last_lr()[0])
        beta1.append(opt.param_groups[0]["betas"][0])
        if step < 99:
            s.step()
    assert lrs[0] == pytest.approx(1 / 25) and lrs[29] == pytest.approx(1.0)
    assert lrs[99] == pytest.approx(1 / 25 / 1e4)
    assert lrs[15] == pytest.approx(1.0 + (1 / 25 - 1.0) / 2 * (math.cos(math.pi * 15 / 29) + 1))
    assert beta1[0] == pytest.approx(0.95) and beta1[29] == pytest.approx(0.85)
    assert beta1[99] == pytest.approx(0.95) and opt.param_groups[0]["betas"][1] == 0.999
    assert np.all(np.diff(lrs[:30]) > 0) and np.all(np.diff(lrs[29:]) < 0)
    s.step()  # step 100 is allowed, as in torch; one more is not
    with pytest.raises(ValueError, match="stepped 101 times, past total_steps 100"):
        s.step()


def test_warm_restarts_restart_at_growing_periods():
    opt = _optimizer((1.0,))
    s = sched.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=0.1)
    got = []
    for _ in range(22):
        got.append(s.get_last_lr()[0])
        s.step()
    starts, periods = [0, 3, 9, 21], [3, 6, 12, 24]  # restarts after 3, then 6, then 12 steps
    want = []
    for e in range(22):
        i = max(i for i, start in enumerate(starts) if start <= e)
        want.append(0.1 + 0.9 * (1 + math.cos(math.pi * (e - starts[i]) / periods[i])) / 2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    s.step(4.5)  # a fractional epoch: 1.5 steps into the 6-step period
    assert s.get_last_lr()[0] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 1.5 / 6)) / 2)
    resumed = sched.CosineAnnealingWarmRestarts(_optimizer((1.0,)), T_0=3, T_mult=2, eta_min=0.1)
    resumed.load_state_dict(s.state_dict())
    assert resumed.get_last_lr() == s.get_last_lr() and resumed.last_epoch == s.last_epoch == 4


def test_reduce_on_plateau_waits_patience_then_cools_down():
    opt = _optimizer((1.0,))
    s = sched.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    losses = [5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3, 3]
    got = []
    for loss in losses:
        s.step(loss)
        got.append(s.get_last_lr()[0])
    # 3 epochs without improvement (more than patience=2) halve the lr, 1 cooldown epoch does
    # not count, then 3 more halve it again; the floor 0.2 stops a third halving
    assert got == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    resumed = sched.ReduceLROnPlateau(_optimizer((0.25,)), factor=0.5, patience=2, cooldown=1,
                                      min_lr=0.2)
    resumed.load_state_dict(s.state_dict())
    for loss in (3, 3, 3):
        s.step(loss)
        resumed.step(loss)
    assert resumed.get_last_lr() == s.get_last_lr() == [0.2]
    with pytest.raises(ValueError, match="factor must be < 1.0, got 1.5"):
        sched.ReduceLROnPlateau(_optimizer(), factor=1.5)
    with pytest.raises(ValueError, match="2 values for 1 parameter groups"):
        sched.ReduceLROnPlateau(_optimizer((0.1,)), min_lr=[0.1, 0.2])


def test_one_cycle_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="give total_steps, or epochs and steps_per_epoch"):
        sched.OneCycleLR(_momentum_optimizer("sgd"), max_lr=0.1)
    with pytest.raises(ValueError, match="SGD has neither"):
        opt = ag.optim.SGD([ag.zeros(2, requires_grad=True)], lr=0.1)
        opt.defaults.pop("momentum")
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_new_schedulers_same_lrs_and_momentum_as_torch(kind):
    torch = pytest.importorskip("torch")
    tsched = torch.optim.lr_scheduler

    def torch_opt():
        groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in (0.1, 0.03)]
        return (torch.optim.SGD(groups, lr=0.1, momentum=0.9) if kind == "sgd"
                else torch.optim.AdamW(groups))

    momentum = "momentum" if kind == "sgd" else "betas"
    cases = [
        ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS}),
        ("OneCycleLR", {"max_lr": [0.5, 0.2], "epochs": 4, "steps_per_epoch": 10,
                        "three_phase": True, "anneal_strategy": "linear", "div_factor": 10}),
        ("OneCycleLR", {"max_lr": 0.5, "total_steps": 37, "pct_start": 0.25,
                        "cycle_momentum": False}),
        ("CosineAnnealingWarmRestarts", {"T_0": 5}),
        ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.001}),
    ]
    for name, kwargs in cases:
        ours_opt, theirs_opt = _momentum_optimizer(kind), torch_opt()
        ours, theirs = getattr(sched, name)(ours_opt, **kwargs), getattr(tsched, name)(theirs_opt,
                                                                                     **kwargs)
        for _ in range(kwargs.get("total_steps", STEPS)):
            np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
            assert ([g[momentum] for g in ours_opt.param_groups]
                    == pytest.approx([g[momentum] for g in theirs_opt.param_groups], rel=1e-12))
            theirs_opt.step()
            ours.step()
            theirs.step()
        if name == "CosineAnnealingWarmRestarts":
            for epoch in np.arange(0, 20, 0.3):
                ours.step(epoch)
                theirs.step(epoch)
                np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
    rng = np.random.default_rng(0)
    for kwargs in [{}, {"mode": "max", "factor": 0.5, "patience": 2, "cooldown": 1,
                        "threshold_mode": "abs", "threshold": 0.01, "min_lr": [0.01, 0.02]}]:
        ours_opt, theirs_opt = _momentum_optimizer(kind), torch_opt()
        ours = sched.ReduceLROnPlateau(ours_opt, **kwargs)
        theirs = tsched.ReduceLROnPlateau(theirs_opt, **kwargs)
        for metric in rng.random(100).tolist():
            theirs_opt.step()
            ours.step(metric)
            theirs.step(metric)
            np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
            assert (ours.best, ours.num_bad_epochs) == (theirs.best, theirs.num_bad_epochs)
