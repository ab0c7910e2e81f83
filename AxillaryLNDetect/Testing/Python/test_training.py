"""Training recipe pieces: stage targets from sparse annotations, augmentation, losses on the valid output, a short
run of both stages, annotated training folders, detector files."""
import numpy as np
import pytest
import torch

from mednets.phantoms.axilla_ct import axilla_ct_phantom

from AxillaryLNDetectLib.configs import get_config
from AxillaryLNDetectLib.training import AnnotatedCT, AxillaryAugment, stage_case, stage_loss, train_stage

GRID = dict(shape=(32, 48, 96), spacing=(4.0, 4.0, 4.0), node_diameter_mm=(8.0, 20.0))
TINY = get_config("cpu_small").replace(model_overrides={"widths": (2, 4, 8)}, input_size=48, inference_size=64,
                                       stage1_spacing=8.0, stage2_spacing=4.0, voi_opening_size=3, shell_size=3)


@pytest.fixture(scope="module")
def items():
    return [AnnotatedCT.from_phantom(f"p{s}", axilla_ct_phantom(seed=s, **GRID)) for s in (1, 2)]


def test_stage_targets(items):
    voi = stage_case(items[0], "voi", TINY)
    pad = TINY.input_size // 2  # cases are padded by half a patch (air, background, weight 0)
    assert voi.image.shape[1:] == voi.label.shape and voi.spacing == (8.0, 8.0, 8.0)
    assert voi.label.shape == tuple(n + 2 * pad for n in voi.extra["volume"].shape)
    assert voi.label.any() and voi.weight[:pad].sum() == 0 and (voi.extra["weight"] == 1).all()
    assert np.allclose(voi.image[0, :pad], -2.0)
    ln = stage_case(items[0], "ln", TINY)
    assert ln.spacing == (4.0, 4.0, 4.0) and ln.weight is not None
    instances = ln.extra["instances"]
    weight, label = ln.extra["weight"], ln.extra["label"]
    assert np.array_equal(ln.label[pad:-pad, pad:-pad, pad:-pad], label)
    assert instances.max() == len(items[0].diameters_mm)  # every node inside the VOI crop
    assert (weight[label > 0] > 0).all() and (weight == 0).any()  # shell masking
    totals = [weight[instances == n].sum() for n in range(1, instances.max() + 1)]
    assert np.allclose(totals, totals[0], rtol=1e-5)  # size-normalised: equal total weight per node
    with pytest.raises(ValueError):
        stage_case(items[0], "mask", TINY)


def test_augmentation_keeps_label_weight_aligned_and_is_seeded():
    image = np.zeros((1, 20, 20, 20), np.float32)
    label = np.zeros((20, 20, 20), np.uint8)
    image[0, 8:12, 8:12, 2:6] = 1.0
    label[8:12, 8:12, 2:6] = 1
    weight = label.astype(np.float32) * 2 + 1
    hook = AxillaryAugment(rotation_sd_deg=5.0, zoom_range=0.2, noise_sd_hu=0.0)
    a = hook(image, label, np.random.default_rng(0), weight=weight)
    b = hook(image, label, np.random.default_rng(0), weight=weight)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    out_image, out_label, out_weight = a
    assert out_image.shape == image.shape and out_label.shape == label.shape
    assert np.array_equal(out_weight == 3, out_label == 1)  # weight map moved with the label
    assert np.allclose(out_image[0][out_label == 1], 1.0, atol=0.6)
    flips = [AxillaryAugment(0, 0, True, 0)(image, label, np.random.default_rng(s))[1] for s in range(8)]
    assert any(f[8:12, 8:12, 14:18].all() for f in flips) and any(f[8:12, 8:12, 2:6].all() for f in flips)
    noisy = AxillaryAugment(0, 0, False, 5.0)(image, label, np.random.default_rng(1))[0]
    assert 0.005 < float(np.std(noisy - image)) < 0.015  # 5 HU = 0.01 after /500


def test_losses_crop_targets_to_the_valid_output():
    probabilities = torch.full((2, 2, 4, 4, 4), 0.5)
    target = torch.zeros(2, 12, 12, 12, dtype=torch.long)
    target[:, 4:8, 4:8, 4:8] = 1  # exactly the output region is foreground
    weight = torch.ones(2, 12, 12, 12)
    ce = stage_loss("ln")(probabilities, target, weight)
    assert ce.item() == pytest.approx(-np.log(0.5 + 1e-7), rel=1e-5)
    dice = stage_loss("voi")(probabilities, target)
    assert dice.item() == pytest.approx(1 - 2 * 0.5 * 128 / (128 + 64), rel=1e-4)
    zero = stage_loss("ln")(probabilities, target, torch.zeros_like(weight))
    assert zero.item() == 0.0


def test_short_training_of_both_stages_writes_checkpoints(items, tmp_path):
    from mednets.checkpoints import read_checkpoint_metadata

    changes = {"batch_size": 2, "validate_every": 2}
    result, voi = train_stage("voi", items[:1], items[1:], TINY, str(tmp_path / "voi"), iterations=2,
                              training_changes=changes, device="cpu")
    assert result.iterations == 2 and result.best_checkpoint is not None
    meta = read_checkpoint_metadata(result.best_checkpoint)
    assert meta.module == "AxillaryLNDetect" and meta.extra["stage"] == "voi" and meta.spacing == (8.0, 8.0, 8.0)
    result, ln = train_stage("ln", items[:1], items[1:], TINY, str(tmp_path / "ln"), iterations=2,
                             initial_network=voi, training_changes=changes, device="cpu")
    assert ln.dropout_rate == TINY.dropout_finetune  # fine-tuning from the VOI network
    assert "jaccard" in result.history.metric_names()
    from AxillaryLNDetectLib.models import detector_from_path, load_detector

    detector = load_detector(detector_from_path(tmp_path), device="cpu")
    assert detector.name == tmp_path.name and detector.config.stage2_spacing == 4.0


def test_annotated_folder_round_trip_and_detector_errors(items, tmp_path):
    from AxillaryLNDetectLib.cases import read_annotated_folder, write_annotated_case
    from AxillaryLNDetectLib.models import detector_from_path

    item = items[0]
    write_annotated_case(tmp_path, "case a", item.volume, item.centres_ras, item.diameters_mm)
    second = write_annotated_case(tmp_path, "case a", item.volume, item.centres_ras[:1], item.diameters_mm[:1])
    assert second[1].name == "case_a_2_nodes.json"
    loaded = read_annotated_folder(tmp_path)
    assert [x.name for x in loaded] == ["case_a", "case_a_2"]
    np.testing.assert_allclose(loaded[0].centres_ras, item.centres_ras)
    np.testing.assert_allclose(loaded[0].volume.array, item.volume.array, atol=1e-3)
    with pytest.raises(ValueError, match="diameters"):
        write_annotated_case(tmp_path, "bad", item.volume, item.centres_ras, item.diameters_mm[:1])
    with pytest.raises(ValueError, match="training folder"):
        detector_from_path(tmp_path)
    lone = tmp_path / "solo-ln.safetensors"
    lone.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="missing"):
        detector_from_path(lone)
