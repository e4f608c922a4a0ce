import numpy as np
import pyarrow as pa
import pytest

from torchwork.tables import arrow


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5, -2.0, 3.25, 0.0]),
        np.array([1, -5, 7, 2**40], dtype=np.int64),
        np.array([3, 4, 5], dtype=np.int16),
        np.array([True, False, True, True, False, False, True, True, False]),
    ],
)
def test_numbers_round_trip_through_buffers(values):
    array = arrow.from_numpy(values)
    assert array.to_pylist() == values.tolist()
    assert np.array_equal(arrow.to_numpy(array), values)
    sliced = array.slice(1, len(values) - 2)  # an offset into the buffer
    assert np.array_equal(arrow.to_numpy(sliced), values[1:-1])


def test_nulls_become_nan_and_are_reported():
    array = pa.array([1.0, None, 3.0, None], pa.float64())
    assert np.array_equal(arrow.float_values(array), [1.0, np.nan, 3.0, np.nan], equal_nan=True)
    assert arrow.validity(array).tolist() == [True, False, True, False]
    assert arrow.validity(pa.array([1, 2])) is None
    masked = arrow.from_numpy(np.array([4, 5, 6]), mask=np.array([False, True, False]))
    assert masked.to_pylist() == [4, None, 6]


def test_decimals_become_floats():
    # Parquet files from databases often hold decimal columns, which have no NumPy layout.
    from decimal import Decimal

    array = pa.array([Decimal("1.25"), None, Decimal("-3.50")], pa.decimal128(6, 2))
    assert np.array_equal(arrow.float_values(array), [1.25, np.nan, -3.5], equal_nan=True)
    assert arrow.to_numpy(array.slice(2), np.float32).tolist() == [-3.5]


def test_labels_and_dictionaries():
    assert arrow.from_values(["a", "bb", "é"]).to_pylist() == ["a", "bb", "é"]
    assert arrow.from_values([0, 1]).type == pa.int64()
    assert arrow.from_values([0.5, 1]).to_pylist() == [0.5, 1.0]
    labelled = arrow.labelled(np.array([1, 0, 1], dtype=np.int8), ["no", "yes"])
    assert labelled.to_pylist() == ["yes", "no", "yes"]
