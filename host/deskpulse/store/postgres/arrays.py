"""A batch's rows sent to PostgreSQL as one `bigint[][]` in the binary array format, built
by numpy in one go. psycopg's own list dumper packs each element in Python: a push's 13
columns of 50 rows cost about 170 µs of the writer's CPU that way, one matrix about 20 µs
(tools/bench_serve.py, docs/benchmarks.md "Issue 16 item 8, second pass").

A matrix holds integers only: text columns go as codes that the SQL maps back (an array
subscript out of range is NULL there), and NULL as `NULL_INT`, which the SQL turns back
with `nullif`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.adapt import Dumper

if TYPE_CHECKING:
    import numpy as np

NULL_INT = -(2 ** 63)
"""NULL in a matrix: no stored column takes the lowest bigint."""

_HEADER = struct.Struct(">7i")  # ndim, has nulls, element type, (length, lower bound) x 2
_INT8_OID = 20


class Int8Matrix:
    """Rows of equal length as a PostgreSQL binary `bigint[][]` (sent with `%b`)."""

    __slots__ = ("data", "values")

    def __init__(self, rows: Sequence[Sequence[int]], width: int) -> None:
        import numpy as np

        try:
            self.values: np.ndarray = np.array(rows, dtype=np.int64).reshape(len(rows),
                                                                             width)
        except OverflowError:  # as the server would have refused the number
            raise psycopg.errors.NumericValueOutOfRange("bigint out of range") from None
        """The rows as numpy, for the caller's own use (the rollups' columns)."""
        # Each element goes as its length (8) and its value, big-endian.
        wire = np.empty(self.values.shape, dtype=[("length", ">i4"), ("value", ">i8")])
        wire["length"] = 8
        wire["value"] = self.values
        self.data = _HEADER.pack(2, 0, _INT8_OID, len(rows), 1, width, 1) + wire.tobytes()


class _Int8MatrixDumper(Dumper):
    format = psycopg.pq.Format.BINARY
    oid = psycopg.postgres.types["int8"].array_oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj.data)


psycopg.adapters.register_dumper(Int8Matrix, _Int8MatrixDumper)
