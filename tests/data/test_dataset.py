"""The shard encoding of a prepared dataset: raw bytes in fixed-size binary columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygym.data.dataset import (
    decode_column,
    decode_table,
    encode_rows,
    tensor_specs,
    write_shard,
)


def _rows(n: int, dtype: str = "uint8", bands: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    high = np.iinfo(dtype).max
    return {
        "image": rng.integers(0, high, (n, 6, 10, bands), dtype=dtype, endpoint=True),
        "label": rng.integers(0, 5, (n, 6, 10), dtype=np.uint8),
        "valid_hw": rng.integers(1, 7, (n, 2), dtype=np.int32),
        "counts": rng.integers(0, 10**12, (n, 5), dtype=np.int64),
    }


@pytest.mark.parametrize(("dtype", "bands"), [("uint8", 3), ("uint16", 4), ("uint8", 1)])
def test_parquet_round_trip_is_exact(tmp_path: Path, dtype: str, bands: int) -> None:
    arrays = _rows(7, dtype, bands)
    write_shard(encode_rows([f"k{i}" for i in range(7)], range(7), arrays),
                tmp_path / "a.parquet")
    back = decode_table(pq.read_table(tmp_path / "a.parquet"),
                        tensor_specs((6, 10), bands, dtype, num_classes=4))
    assert back["key"] == [f"k{i}" for i in range(7)]
    assert back["copy"].tolist() == list(range(7))
    for name, values in arrays.items():
        assert back[name].dtype == values.dtype and back[name].shape == values.shape
        np.testing.assert_array_equal(back[name], values)
        assert back[name].flags.writeable  # training code may modify batches in place


def test_columns_are_raw_bytes_with_shape_and_dtype_metadata(tmp_path: Path) -> None:
    arrays = _rows(3)
    write_shard(encode_rows(["a", "b", "c"], [0, 0, 1], arrays), tmp_path / "a.parquet")
    meta = pq.ParquetFile(tmp_path / "a.parquet")
    field = meta.schema_arrow.field("image")
    assert field.type == pa.binary(6 * 10 * 3)
    assert field.metadata == {b"shape": b"6,10,3", b"dtype": b"|u1"}
    column = meta.metadata.row_group(0).column(2)
    assert column.path_in_schema == "image"
    assert column.physical_type == "FIXED_LEN_BYTE_ARRAY"
    # 1 byte per uint8 value on disk before compression (Ray's tensor type stores int32: 4x)
    assert column.total_uncompressed_size < 1.2 * arrays["image"].nbytes + 200


def test_decode_handles_chunks_slices_and_sorting() -> None:
    a, b = _rows(4, seed=1), _rows(5, seed=2)
    chunked = pa.concat_tables([encode_rows(list("abcd"), [0] * 4, a),
                                encode_rows(list("efghi"), [1] * 5, b)])
    assert chunked.column("image").num_chunks == 2
    specs = tensor_specs((6, 10), 3, "uint8", 4)
    both = np.concatenate([a["image"], b["image"]])
    np.testing.assert_array_equal(decode_column(chunked.column("image"), *specs["image"]), both)
    # a slice starting inside the first chunk (non-zero Arrow offset)
    part = chunked.slice(2, 5)
    np.testing.assert_array_equal(decode_table(part, specs)["image"], both[2:7])
    # sort_by (what load_numpy does) reorders rows through take()
    flipped = chunked.sort_by([("key", "descending")])
    np.testing.assert_array_equal(decode_table(flipped, specs)["label"],
                                  np.concatenate([a["label"], b["label"]])[::-1])
    empty = decode_column(chunked.column("image").slice(0, 0), *specs["image"])
    assert empty.shape == (0, 6, 10, 3)



def test_a_shard_that_does_not_match_the_card_is_refused_with_the_fix() -> None:
    from raygym.errors import DataError

    table = encode_rows(list("ab"), [0, 0], _rows(2, bands=3))
    wrong = tensor_specs((6, 10), 4, "uint8", 4)  # the card says 4 bands, the shard holds 3
    with pytest.raises(DataError, match=r"bytes per row.*--overwrite"):
        decode_column(table.column("image"), *wrong["image"])
