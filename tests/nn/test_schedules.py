"""Learning-rate schedules against values worked out by hand."""

from functools import partial

import pytest

import alphagrad as ag
from alphagrad import optim

# max_lr 1.0, min_lr 0.1, 10 warmup steps, decay over steps 10..110
COSINE = {
    0: 0.1,
    4: 0.5,
    9: 1.0,
    10: 1.0,
    35: 0.1 + 0.9 * 0.5 * (1 + 0.5**0.5),
    60: 0.55,
    85: 0.1 + 0.9 * 0.5 * (1 - 0.5**0.5),
    110: 0.1,
    111: 0.1,
    10_000: 0.1,
}
# max_lr 1.0, min_lr 0.0, 10 warmup steps, decay over steps 10..110
LINEAR = {0: 0.1, 9: 1.0, 10: 1.0, 35: 0.75, 60: 0.5, 109: 0.01, 110: 0.0, 500: 0.0}


@pytest.mark.parametrize("step, want", COSINE.items())
def test_warmup_cosine(step, want):
    assert optim.warmup_cosine(step, 1.0, 0.1, 10, 110) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("step, want", LINEAR.items())
def test_linear(step, want):
    assert optim.linear(step, 1.0, 0.0, 10, 110) == pytest.approx(want, abs=1e-12)


def test_constant():
    assert optim.constant(0, 0.1) == 0.1
    assert optim.constant(4, 1e-3, warmup_steps=10) == pytest.approx(5e-4)
    assert optim.constant(10, 1e-3, warmup_steps=10) == 1e-3


def test_no_decay_phase_goes_straight_to_min_lr():
    assert optim.warmup_cosine(5, 1.0, 0.2, 5, 5) == 0.2
    assert optim.linear(5, 1.0, 0.2, 5, 5) == 0.2


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="decay_steps"):
        optim.warmup_cosine(20, 1.0, 0.1, 10, 5)
    with pytest.raises(ValueError, match="step must be >= 0"):
        optim.linear(-1, 1.0, 0.1, 10, 100)


def test_schedule_functions_are_lambda_lr_factors_and_round_trip():
    a, b = ag.zeros(2, requires_grad=True), ag.zeros(3, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    fn = partial(optim.warmup_cosine, max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_steps=110)
    sched = optim.lr_scheduler.LambdaLR(opt, fn)
    assert sched.get_last_lr() == [0.1, 0.5]
    for _ in range(35):
        sched.step()
    assert sched.get_last_lr() == pytest.approx([COSINE[35], 5 * COSINE[35]])
    resumed = optim.lr_scheduler.LambdaLR(optim.SGD([{"params": [a]}, {"params": [b]}], lr=1.0), fn)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.get_last_lr() == pytest.approx([COSINE[35], 5 * COSINE[35]])
    for s in (resumed, sched):
        for _ in range(25):
            s.step()
    assert resumed.get_last_lr() == sched.get_last_lr() == pytest.approx([COSINE[60], 5 * COSINE[60]])
