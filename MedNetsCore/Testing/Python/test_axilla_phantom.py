"""The contrast-CT axilla phantom with lymph nodes (AxillaryLNDetect)."""
import numpy as np
from scipy import ndimage
import pytest

from mednets.phantoms import KJI_LPS_DIRECTIONS
from mednets.phantoms.axilla_ct import AXILLA_TISSUES, axilla_ct_phantom

SMALL = dict(shape=(40, 50, 90), spacing=(4.0, 4.0, 4.0))


@pytest.fixture(scope="module")
def case():
    return axilla_ct_phantom(seed=3)


def test_seeded_and_different_seeds_differ():
    a = axilla_ct_phantom(seed=1, **SMALL)
    b = axilla_ct_phantom(seed=1, **SMALL)
    c = axilla_ct_phantom(seed=2, **SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_tissues_in_hu(case):
    tissues = case.extra["tissues"]
    assert set(np.unique(tissues)) <= set(AXILLA_TISSUES)
    means = {name: float(case.image[tissues == value].mean()) for value, name in AXILLA_TISSUES.items()
             if (tissues == value).sum() > 50}
    assert means["air"] < -900 and -160 < means["fat"] < -40 and 20 < means["muscle"] < 80
    assert means["lung"] < -700 and means["bone"] > 400 and means["artery"] > 150
    assert 100 < means["vein"] < means["artery"]
    assert case.modality == "CT" and case.image.dtype == np.float32
    assert np.array_equal(case.extra["directions_ras"], KJI_LPS_DIRECTIONS)


def test_lymph_nodes_annotations(case):
    n = int(case.labels.max())
    assert 3 <= n <= 8 and len(case.label_names) == n
    assert set(np.unique(case.labels)) == set(range(n + 1))
    short = case.extra["short_axis_mm"]
    assert len(short) == n and (short >= 3.0).all() and (short <= 25.0).all()
    assert (case.extra["long_axis_mm"] >= short).all()
    tissues = case.extra["tissues"]
    for index, centre in enumerate(case.extra["centres_kji"], start=1):
        voxel = tuple(int(round(c)) for c in centre)
        assert case.labels[voxel] == index                 # the annotated centre lies in its node
        node = case.labels == index
        assert (tissues[node] == 7).all()
        assert case.extra["axilla_mask"][node].mean() > 0.9  # nodes sit in the axillary fat pads
        rim = ndimage.binary_dilation(node) & ~node        # wholly surrounded by fat: no air (skin) or muscle beside
        assert not np.isin(tissues[rim], (0, 2)).any()
        if node.sum() > 30:  # visible soft tissue in fat (hilum aside)
            assert np.median(case.image[node]) > -40
    assert np.allclose(case.extra["centres_mm"], case.extra["centres_kji"] * np.array(case.spacing))


def test_size_range_and_count_options():
    big = axilla_ct_phantom(seed=5, num_nodes=(4, 4), node_diameter_mm=(10.0, 14.0), **SMALL)
    assert big.labels.max() <= 4 and ((big.extra["short_axis_mm"] >= 10) & (big.extra["short_axis_mm"] <= 14)).all()
    none = axilla_ct_phantom(seed=5, num_nodes=(0, 0), **SMALL)
    assert none.labels.max() == 0 and len(none.extra["short_axis_mm"]) == 0
    with pytest.raises(ValueError):
        axilla_ct_phantom(node_diameter_mm=(5.0, 3.0))
    with pytest.raises(ValueError):
        axilla_ct_phantom(shape=(10, 10), spacing=(1.0, 1.0))
