"""Arrow arrays to and from NumPy, straight through their buffers.

pyarrow's own conversions (`Array.to_numpy`, `pa.array(...)` of a list or an array) first
ask whether pandas is installed and import it where it is: about half a second of a table
run here, for nothing torchwork uses. Reading an array's buffers and building one from
buffers never does. These helpers cover the plain types a table run converts: numbers,
booleans, text, and dictionaries of them. `compute` calls Arrow's compute functions without
importing `pyarrow.compute`, whose Python wrappers and their docstrings take 0.15 s to make.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

try:  # the compiled functions themselves, which pyarrow.compute wraps
    from pyarrow._compute import CastOptions, SetLookupOptions, call_function
except ImportError:  # pragma: no cover - where pyarrow moves them, their public home
    from pyarrow.compute import CastOptions, SetLookupOptions, call_function


def to_numpy(array: pa.Array, dtype: Any = None) -> np.ndarray:
    """A numeric or boolean array's values (null slots hold whatever the buffer holds; see
    `validity`), as `dtype` when given. A view of Arrow's memory where no conversion is
    needed."""
    type_ = array.type
    if pa.types.is_dictionary(type_):
        raise TypeError("to_numpy takes plain arrays; use .indices and .dictionary")
    data = array.buffers()[1]
    if pa.types.is_boolean(type_):
        bits = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        values = np.unpackbits(bits, bitorder="little")[array.offset : array.offset + len(array)]
        values = values.view(np.bool_)
    elif pa.types.is_decimal(type_):
        # Decimals have no NumPy layout: Arrow casts them to float64 first.
        return to_numpy(cast(array, pa.float64()), dtype)
    else:
        native = np.dtype(type_.to_pandas_dtype())
        values = np.frombuffer(
            data, dtype=native, count=len(array), offset=array.offset * native.itemsize
        )
    return values if dtype is None else values.astype(dtype, copy=False)


def validity(array: pa.Array) -> np.ndarray | None:
    """True where the array holds a value, False where it is null; None when none is null."""
    if not array.null_count:
        return None
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[array.offset : array.offset + len(array)].view(
        np.bool_
    )


def float_values(column: pa.ChunkedArray | pa.Array, dtype: Any = np.float32) -> np.ndarray:
    """A numeric column as one float array, NaN where a cell is empty."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        values = to_numpy(chunk, dtype)
        present = validity(chunk)
        if present is not None:
            values = values.copy() if not values.flags.writeable else values
            values[~present] = np.nan
        parts.append(values)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def from_numpy(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """A 1-D numeric or boolean NumPy array as an Arrow array; null where mask is True."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        type_ = pa.bool_()
    else:
        data = pa.py_buffer(values)
        type_ = pa.from_numpy_dtype(values.dtype)
    nulls = None
    count = 0
    if mask is not None and mask.any():
        nulls = pa.py_buffer(np.packbits(~mask, bitorder="little"))
        count = int(mask.sum())
    return pa.Array.from_buffers(type_, len(values), [nulls, data], null_count=count)


def from_values(values: Sequence[Any]) -> pa.Array:
    """A short list of labels or categories (all text, or all numbers) as an Arrow array."""
    if all(isinstance(v, str) for v in values):
        encoded = [v.encode("utf-8") for v in values]
        offsets = np.cumsum([0] + [len(b) for b in encoded], dtype=np.int32)
        return pa.Array.from_buffers(
            pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        )
    if all(isinstance(v, bool) for v in values):
        return from_numpy(np.array(values, dtype=np.bool_))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return from_numpy(np.array(values, dtype=np.int64))
    return from_numpy(np.array([float(v) for v in values], dtype=np.float64))


def labelled(codes: np.ndarray, labels: Sequence[Any], mask: np.ndarray | None = None) -> pa.Array:
    """Each row's label, as a dictionary array of the codes into the labels."""
    return pa.DictionaryArray.from_arrays(from_numpy(codes, mask), from_values(labels))


def compute(name: str, *args: Any, options: Any = None) -> Any:
    """An Arrow compute function by name, as `pyarrow.compute.<name>(*args)` would call it."""
    return call_function(name, list(args), options)


def cast(values: Any, type_: pa.DataType) -> Any:
    """values as type_, refusing lossy conversions (as `pyarrow.compute.cast` does)."""
    return compute("cast", values, options=CastOptions.safe(type_))


def index_in(values: Any, value_set: pa.Array) -> Any:
    """Each value's position in value_set, null where it is not there."""
    return compute("index_in", values, options=SetLookupOptions(value_set))


def is_in(values: Any, value_set: pa.Array) -> Any:
    """True where a value is in value_set (False where it is null)."""
    return compute("is_in", values, options=SetLookupOptions(value_set))


def unique(values: Any) -> list[Any]:
    """The distinct values that are not null, as Python values."""
    return [v for v in compute("unique", values).to_pylist() if v is not None]
