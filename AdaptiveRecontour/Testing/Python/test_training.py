"""Training recipe: batch doubling by swapping, patch sampling, loss weights that really change, checkpoints."""

import numpy as np
import pytest
import torch

from AdaptiveRecontourLib.configs import get_config
from AdaptiveRecontourLib.training import PairPatchSampler, TrainingPair, train_network

N = 48


def _pairs(count=2, shape=(30, 36, 40), seed=0):
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        fl = np.zeros(shape, np.uint8)
        fl[10:16, 12:20, 14:22] = 1
        fl[16:20, 20:24, 15:21] = 2
        fl[8:22, 24:30, 16:24] = 3
        fl[18:26, 6:14, 10:30] = 4
        ml = np.roll(fl, 1, axis=1)
        f = np.where(fl > 0, 0.1 * fl, -0.2).astype(np.float32) + rng.normal(0, 0.02, shape).astype(np.float32)
        m = np.where(ml > 0, 0.1 * ml, -0.2).astype(np.float32) + rng.normal(0, 0.02, shape).astype(np.float32)
        pairs.append(TrainingPair(f, m, fl, ml, name=str(i)))
    return pairs


def test_sampler_doubles_batch_by_swapping():
    pairs = _pairs(1)
    sampler = PairPatchSampler(pairs, N, {"target": 1, "oar": 1, "torso": 1}, seed=3)
    inputs, targets = sampler.next_batch(2)
    assert inputs.shape == (4, 3, N, N, N) and targets.shape == (4, 1, N, N, N)
    for i in range(2):  # item i + 2 is item i with fixed and moving exchanged
        assert torch.equal(inputs[i + 2, 0], inputs[i, 1]) and torch.equal(inputs[i + 2, 1], inputs[i, 0])
        assert torch.equal(inputs[i + 2, 2], targets[i, 0].float()) and torch.equal(targets[i + 2, 0],
                                                                                    inputs[i, 2].long())
    state = sampler.state_dict()
    a = sampler.next_batch(2)
    sampler.load_state_dict(state)
    b = sampler.next_batch(2)
    assert torch.equal(a[0], b[0])


def test_sampler_centres_follow_the_categories():
    pairs = _pairs(1)
    for kind, labels in (("target", (1, 2)), ("oar", (3, 4))):
        sampler = PairPatchSampler(pairs, N, {kind: 1.0}, seed=0, swap=False)
        for _ in range(5):
            inputs, targets = sampler.next_batch(1)
            assert int(targets[0, 0, N // 2, N // 2, N // 2]) in labels


@pytest.mark.parametrize("weighting", ["homoscedastic", "dwa"])
def test_loss_weights_change_during_jrs_training(weighting, tmp_path):
    config = get_config("cpu_small", model="sedd", filters=(4, 6, 8), weighting=weighting, patch_size=N)
    network, result, loss = train_network(config, _pairs(), iterations=4, seed=0, output_dir=str(tmp_path),
                                          log_every=1)
    first, last = loss.history[0], loss.history[-1]
    names = ("w_ncc", "w_dsc_r", "w_dsc_s")
    assert all(first[n] == pytest.approx(1.0) for n in names)
    assert any(abs(last[n] - 1.0) > 1e-4 for n in names), last
    if weighting == "homoscedastic":  # the log-variances are parameters the Trainer's optimizer updated
        assert torch.all(loss.module.weighting.log_vars.detach() != 0)
    else:
        assert sum(last[n] for n in names) == pytest.approx(3.0)
    from AdaptiveRecontourLib.models import load_recontour_model

    for name in ("model", "last"):
        loaded, cfg = load_recontour_model(str(tmp_path / f"{name}.safetensors"), device="cpu")
        assert cfg.model == "sedd" and cfg.weighting == weighting
        assert set(loaded.network.state_dict()) == set(network.state_dict())


def test_bending_energy_fixed_weight_and_all_terms_present():
    config = get_config("cpu_small", model="cross_stitch", filters=(4, 6, 8), patch_size=N)
    _, _, loss = train_network(config, _pairs(1), iterations=2, seed=1)
    entry = loss.history[-1]
    assert {"ncc", "dsc_r", "dsc_s", "bending"} <= set(entry) and all(np.isfinite(v) for v in entry.values())
    assert config.bending_weight == 0.5


def test_batch_norm_recalibration_makes_eval_match_train_mode():
    """Precise BN: after recalibration the running statistics are the plain averages over the calibration batches,
    so eval-mode outputs on one of those batches equal the train-mode outputs on it (batch statistics)."""
    from AdaptiveRecontourLib import build_model
    from AdaptiveRecontourLib.training import recalibrate_batch_norm

    torch.manual_seed(0)
    net = build_model("jrs_reg", filters=(4, 8, 8))
    sampler = PairPatchSampler(_pairs(1), N, {"target": 1, "oar": 1, "torso": 1}, seed=5)
    inputs, _ = sampler.next_batch(2)
    args = (inputs[:, 0:1], inputs[:, 1:2], inputs[:, 2:3])
    net.eval()
    with torch.no_grad():
        stale = net(*args)["dvf"][0]  # fresh running stats (mean 0, var 1): far from the batch statistics
        net.train()
        batch_stats = net(*args)["dvf"][0]
    sampler.load_state_dict({"rng": np.random.default_rng(5).bit_generator.state})  # the same batch again
    momenta = [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert recalibrate_batch_norm(net, sampler, batches=1, batch_size=2) == len(momenta) > 0
    assert [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)] == momenta
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        calibrated = net(*args)["dvf"][0]
    # BN's running variance is unbiased, the batch one biased: equal up to that factor, not to float precision
    assert (calibrated - batch_stats).abs().max() < 0.1 * (stale - batch_stats).abs().max()
