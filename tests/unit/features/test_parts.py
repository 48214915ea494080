"""Reading a table a key range at a time: every row once, a key's rows together, with origin."""

import pyarrow as pa
import pyarrow.parquet as pq

from features.parts import KeyRange, PartedFiles, PartWriter, split_at
from features.quarantine import SOURCE, SOURCE_ROW


def _files(folder):
    keys = [["b", "a", None, "c", "a"], ["c", "d", "b", None, "e", "a"]]
    paths = []
    for i, column in enumerate(keys):
        path = folder / f"part-{i}.parquet"
        table = pa.table({"key": column, "value": list(range(len(column)))})
        pq.write_table(table, path, row_group_size=2)
        paths.append(path)
    return paths, keys


def test_parts_hold_every_row_once_with_a_key_in_one_part(tmp_path):
    paths, keys = _files(tmp_path)
    files = PartedFiles(paths, "key", root=tmp_path)
    parts = files.ranges(rows_per_part=3)
    assert len(parts) >= 3 and parts[0].low is None and parts[-1].high is None
    seen, owner = [], {}
    for part in parts:
        rows = files.read(part, provenance=True).to_pylist()
        for row in rows:
            assert owner.setdefault(row["key"], part) == part, "a key split over two parts"
            file = int(row[SOURCE].removeprefix("part-").removesuffix(".parquet"))
            assert keys[file][row[SOURCE_ROW]] == row["key"] and row["value"] == row[SOURCE_ROW]
        seen += [(r[SOURCE], r[SOURCE_ROW]) for r in rows]
    assert sorted(seen) == sorted(
        (f"part-{f}.parquet", r) for f, column in enumerate(keys) for r in range(len(column))
    )
    assert owner[None] == parts[0]  # null keys go with the range open below


def test_a_range_skips_row_groups_that_cannot_hold_its_keys(tmp_path):
    path = tmp_path / "sorted.parquet"
    pq.write_table(pa.table({"key": list("aabbccdd")}), path, row_group_size=2)
    files = PartedFiles([path], "key")
    metadata = pq.ParquetFile(path).metadata
    groups = [metadata.row_group(g).column(0).statistics for g in range(metadata.num_row_groups)]
    middle = KeyRange("b", "d")
    assert [middle.may_hold(s) for s in groups] == [False, True, True, False]
    assert files.read(middle).column("key").to_pylist() == list("bbcc")
    assert files.read(KeyRange("x", None)).num_rows == 0
    assert [(r.low, r.high) for r in split_at(["b", "d"])] == [(None, "b"), ("b", "d"), ("d", None)]


def test_a_part_writer_moves_its_file_in_place_only_when_closed(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    writer = PartWriter(target, pa.schema([("key", pa.string())]))
    writer.write(pa.table({"key": ["a"]}))
    writer.write(pa.table({"key": ["b", "c"]}))
    assert not target.exists()
    writer.close()
    assert pq.read_table(target).column("key").to_pylist() == ["a", "b", "c"]
