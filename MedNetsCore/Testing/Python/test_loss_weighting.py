"""Loss weighting: the homoscedastic log-variances reach the optimizer and move; DWA weights follow Eq. 5.8."""

import math

import pytest
import torch

from mednets.losses import (DynamicWeightAveraging, EqualWeighting, HomoscedasticWeighting, make_weighting,
                            trainable_parameters)

NAMES = ("ncc", "dsc_r", "dsc_s")


def _toy_problem(weighting, steps=15, seed=0):
    """Three 'tasks' on a shared linear model; RAdam over network + weighting parameters."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(4, 3)
    x = torch.randn(64, 4)
    targets = [x @ torch.randn(4) for _ in range(3)]
    opt = torch.optim.RAdam(trainable_parameters(net, weighting), lr=1e-2)
    history = []
    for _ in range(steps):
        out = net(x)
        losses = {n: ((out[:, i] - targets[i]) ** 2).mean() * (i + 1) for i, n in enumerate(NAMES)}
        total = weighting(losses)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(weighting.weights())
    return opt, history


def test_equal_weights_constant():
    _, history = _toy_problem(EqualWeighting(NAMES), steps=3)
    assert all(h == {n: 1.0 for n in NAMES} for h in history)


def test_homoscedastic_log_variances_are_optimised():
    w = HomoscedasticWeighting(NAMES)
    opt, history = _toy_problem(w, steps=15)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert any(p is w.log_vars for p in params)
    first, last = history[0], history[-1]
    assert all(abs(last[n] - 1.0) > 1e-3 for n in NAMES)  # started at exp(0) = 1
    # the task with the largest loss gets the smallest weight
    assert last["dsc_s"] < last["ncc"]


def test_homoscedastic_formula():
    w = HomoscedasticWeighting(("a", "b"), init=0.0)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([math.log(4.0), 0.0]))
    total = w({"a": torch.tensor(2.0), "b": torch.tensor(3.0)})
    # 1/sigma^2 L + log sigma with sigma^2 = 4: 0.5 + log 2; plus 3 + 0
    assert total.item() == pytest.approx(2.0 / 4.0 + math.log(2.0) + 3.0)


def test_dwa_equation_and_change_during_training():
    w = DynamicWeightAveraging(("a", "b"), temperature=1.0)
    assert w.weights() == {"a": 1.0, "b": 1.0}
    w({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert w.weights() == {"a": 1.0, "b": 1.0}  # r = 1 for the first two iterations
    w({"a": torch.tensor(0.5), "b": torch.tensor(1.0)})
    ra, rb = 0.5, 1.0
    want_a = 2 * math.exp(ra) / (math.exp(ra) + math.exp(rb))
    got = w.weights()
    assert got["a"] == pytest.approx(want_a) and got["a"] + got["b"] == pytest.approx(2.0)
    total = w({"a": torch.tensor(2.0), "b": torch.tensor(2.0)})
    assert total.item() == pytest.approx(want_a * 2.0 + (2 - want_a) * 2.0)
    _, history = _toy_problem(DynamicWeightAveraging(NAMES), steps=10)
    assert len({tuple(round(v, 6) for v in h.values()) for h in history[2:]}) > 1
    assert all(sum(h.values()) == pytest.approx(3.0) for h in history)


def test_make_weighting():
    assert isinstance(make_weighting("dwa", NAMES), DynamicWeightAveraging)
    with pytest.raises(ValueError):
        make_weighting("gradnorm", NAMES)
