import io

import numpy as np
import pytest

from gru_edge.edge_runtime.csv_input import (
    ColumnMap,
    CsvRowReader,
    InputError,
    Row,
    RowError,
    infer_numeric_columns,
    resolve_columns,
    sniff_delimiter,
)


def read_all(text, **kw):
    reader = CsvRowReader.open(io.StringIO(text), "s.csv", **kw)
    return reader, list(reader)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("a,b,c", ","),
        ("datetime;Accelerometer1RMS;Accelerometer2RMS;Current", ";"),
        ("a\tb\tc", "\t"),
        ("a|b", "|"),
        ("single", ","),
        ('"x;y",b,c', ","),  # the ';' inside quotes does not count
    ],
)
def test_sniff_delimiter(line, expected):
    assert sniff_delimiter(line) == expected


def test_resolve_columns_auto_timestamp_and_label():
    cols = resolve_columns(["Time", "a", "b", "anomaly"], label_column="anomaly")
    assert cols == ColumnMap(("Time", "a", "b", "anomaly"), (1, 2), ("a", "b"), 0, 3)


def test_resolve_columns_keeps_feature_order_and_can_disable_timestamp():
    cols = resolve_columns(["time", "a", "b"], features=["b", "time"], timestamp_column="")
    assert cols.feature_idx == (2, 0) and cols.timestamp_idx is None
    # a comma-separated string is a list of names
    assert resolve_columns(["a", "b"], features="b, a").feature_names == ("b", "a")


def test_resolve_columns_missing_feature_lists_missing_and_header():
    with pytest.raises(InputError) as e:
        resolve_columns(["ts", "a", "b"], features=["a", "zz", "yy"], source="f.csv")
    msg = str(e.value)
    assert "f.csv" in msg and "'zz', 'yy'" in msg and "['ts', 'a', 'b']" in msg


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(header=["a", "b", "a"]), "duplicate column name 'a'"),
        (dict(header=["a", "b"], label_column="y"), "no label column 'y'"),
        (dict(header=["a", "b"], timestamp_column="t"), "no timestamp column 't'"),
        (dict(header=["a", "y"], features=["a", "y"], label_column="y"), "label column"),
        (dict(header=["time", "y"], label_column="y"), "no feature columns"),
    ],
)
def test_resolve_columns_errors(kw, needle):
    with pytest.raises(InputError, match=needle):
        resolve_columns(**kw)


def test_infer_numeric_columns():
    header = ["ts", "a", "b", "empty", "c"]
    rows = [
        ["2024-01-01", "1", "x", "", "1e3"],
        ["2024-01-02", "", "2", "", "NaN"],
        ["short"],  # wrong length: ignored here
    ]
    assert infer_numeric_columns(header, rows) == ["a", "c"]


def test_reader_yields_rows_and_errors_with_line_numbers_and_keeps_going():
    text = "timestamp,a,b,label\n" "t1,1,2,0\n" "\n" "t3,abc,2,1\n" "t4,1\n" "t5,4,5,true\n" "t6,,6,0\n"
    reader, items = read_all(text, label_column="label")
    assert reader.feature_names == ("a", "b")
    kinds = [(type(i).__name__, i.line) for i in items]
    assert kinds == [("Row", 2), ("RowError", 4), ("RowError", 5), ("Row", 6), ("RowError", 7)]
    assert items[0].timestamp == "t1" and items[0].values.tolist() == [1.0, 2.0] and items[0].label == 0.0
    assert items[0].values.dtype == np.float64
    assert items[1].message == "s.csv, line 4, column 'a': expected a number, got 'abc'"
    assert items[1].column == "a"
    assert "expected 4 fields" in items[2].message and "got 2" in items[2].message
    assert items[3].label == 1.0
    assert "line 7, column 'a'" in items[4].message and "missing" in items[4].message


def test_reader_allow_missing_gives_nan():
    _, items = read_all("a;b\n1;\nNaN;2\n", allow_missing=True)
    assert all(isinstance(i, Row) for i in items)
    assert np.isnan(items[0].values[1]) and np.isnan(items[1].values[0]) and items[1].values[1] == 2.0
    assert items[0].timestamp is None and items[0].label is None


def test_reader_quoted_fields_crlf_and_whitespace():
    text = 'name,"a",b\r\n"x, y", 1.5 ,"2"\r\n\r\n"z",3,4\r\n'
    reader, items = read_all(text, features=["a", "b"], timestamp_column="")
    assert reader.columns.header == ("name", "a", "b")
    assert [i.values.tolist() for i in items] == [[1.5, 2.0], [3.0, 4.0]]
    assert [i.line for i in items] == [2, 4]


def test_reader_streams_line_by_line():
    class OneLineAtATime(io.StringIO):
        """Fails if anyone reads ahead of the line being yielded."""

        def read(self, *a):
            raise AssertionError("read() would block on a pipe")

    stream = OneLineAtATime("a\n1\n2\n3\n")
    reader = CsvRowReader.open(stream, "<stdin>")
    it = iter(reader)
    assert next(it).values.tolist() == [1.0]
    assert stream.tell() == len("a\n1\n")  # nothing beyond the first row has been consumed


def test_reader_hints():
    _, items = read_all("a;b\n1,5;2\n")
    assert "decimal comma" in items[0].message
    _, items = read_all("a,b\n1;2\n")
    assert "wrong delimiter" in items[0].message
    _, items = read_all("a,b\ninf,2\n")
    assert "infinite" in items[0].message


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "empty input"),
        ("\n\n", "empty input"),
        ("1,2,3\n4,5,6\n", "header line naming the columns is required"),
    ],
)
def test_reader_needs_a_header(text, needle):
    with pytest.raises(InputError, match=needle):
        CsvRowReader.open(io.StringIO(text), "<stdin>")


def test_row_error_to_exception():
    err = RowError(3, "x, line 3: bad")
    assert isinstance(err.to_exception(), InputError) and str(err.to_exception()) == "x, line 3: bad"
