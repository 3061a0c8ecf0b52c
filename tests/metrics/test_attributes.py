"""Attribute metrics on hand-built label arrays with known answers."""

import numpy as np
import pytest

from evolens import InputError
from evolens.metrics import (
    attribute_distribution,
    attribute_divergence,
    kl_divergence,
    labels_from_classifier,
    preservation_rate,
    rfair,
    target_success_rate,
    total_variation,
)


def test_distribution_and_divergences():
    assert attribute_distribution([0, 0, 1, 3]).tolist() == [0.5, 0.25, 0.0, 0.25]
    assert attribute_distribution([1], n_values=3).tolist() == [0.0, 1.0, 0.0]
    assert total_variation([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert total_variation([1.0, 0.0], [0.0, 1.0]) == 1.0
    assert total_variation([0.7, 0.3], [0.4, 0.6]) == pytest.approx(0.3)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0


def test_divergence_per_class():
    # Class 0: generated attributes all 1, reference half/half -> TV 0.5; class 1 identical -> 0.
    generated = [1, 1, 0, 1]
    generated_classes = [0, 0, 1, 1]
    reference = [0, 1, 0, 1]
    reference_classes = [0, 0, 1, 1]
    result = attribute_divergence(generated, reference, generated_classes=generated_classes,
                                  reference_classes=reference_classes)
    assert result == {0: 0.5, 1: 0.0}
    assert attribute_divergence(generated, reference) == pytest.approx(0.25)


def test_preservation_and_target_success():
    source = np.array([3, 3, 6, 6, 6, 1])
    output = np.array([3, 8, 6, 6, 0, 1])
    assert preservation_rate(source, output) == pytest.approx(4 / 6)
    assert preservation_rate(source, output, classes=source) == {1: 1.0, 3: 0.5, 6: pytest.approx(2 / 3)}
    assert target_success_rate([1, 1, 0, 1], [1, 0, 0, 1]) == 0.75


def test_rfair_definition():
    data_like = [3] * 60 + [6] * 10  # copies the data's 6:1 imbalance
    assert rfair(data_like, majority=3, minority=6) == 6.0
    assert rfair([3] * 10 + [6] * 10 + [1] * 5, 3, 6) == 1.0  # fair
    assert rfair([3, 3, 1], 3, 6) == float("inf")  # minority dropped
    with pytest.raises(InputError, match="neither majority 3 nor minority 6"):
        rfair([1, 2], 3, 6)


def test_labels_from_a_classifier():
    class Head:
        def classify(self, images):
            return np.zeros(len(images), dtype=np.int64)

    images = np.zeros((4, 1, 2, 2))
    assert labels_from_classifier(images, Head()).tolist() == [0, 0, 0, 0]
    scores = lambda x: np.tile([0.1, 0.9], (len(x), 1))  # noqa: E731
    assert labels_from_classifier(images, scores).tolist() == [1, 1, 1, 1]
    with pytest.raises(InputError, match="classifier: expected"):
        labels_from_classifier(images, 42)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: attribute_distribution([0.5, 1.0]), "integer-coded"),
        (lambda: attribute_distribution([-1, 2]), "non-negative"),
        (lambda: total_variation([0.5, 0.5], [1.0]), "shape"),
        (lambda: total_variation([0.5, 0.6], [0.5, 0.5]), "summing to 1"),
        (lambda: preservation_rate([1, 2], [1]), "like source"),
        (lambda: attribute_divergence([1], [1], metric="js"), "metric"),
        (lambda: attribute_divergence([1], [1], generated_classes=[0]), "both or neither"),
    ],
    ids=["float-labels", "negative", "shapes", "not-a-distribution", "preserve-shape", "metric", "classes"],
)
def test_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()
