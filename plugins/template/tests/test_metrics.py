"""The metric: benchbase's conformance kit checks the contract; a test of its own checks a value."""

import numpy as np
from benchbase import Predictions
from benchbase.testing import check_metric

from benchbase_example.metrics import MaxError


def test_max_error_conforms_to_the_metric_contract():
    check_metric(MaxError)


def test_max_error_is_the_largest_absolute_error():
    pred = Predictions(np.array([1.0, 2.0, 3.0]), np.array([1.5, 0.0, 3.0]), np.arange(3))
    assert MaxError()(pred) == 2.0
