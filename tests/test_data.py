import numpy as np
import pytest

from gru_edge.edge_runtime.csv_input import InputError
from gru_edge.train.data import CleaningReport, load_csv, time_split


def write(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_csv_basic_semicolon_with_timestamp_label_and_text_column(tmp_path):
    p = write(
        tmp_path,
        "datetime;a;b;site;anomaly\n"
        "2020-01-01 00:00;1.0;10;north;0\n"
        "2020-01-01 00:01;2.0;20;north;1.0\n"
        "2020-01-01 00:02;3.0;30;north;false\n",
    )
    ds = load_csv(p, label_column="anomaly")
    assert ds.feature_names == ("a", "b")
    assert ds.values.dtype == np.float64 and ds.values.tolist() == [[1, 10], [2, 20], [3, 30]]
    assert ds.labels.dtype == np.int8 and ds.labels.tolist() == [0, 1, 0]
    assert ds.timestamps[0] == "2020-01-01 00:00"
    assert ds.lines.tolist() == [2, 3, 4]
    assert ds.report.skipped_columns == ["site"]
    assert any("site" in line for line in ds.report.lines())


def test_short_gaps_interpolated_linearly_and_edges_take_nearest(tmp_path):
    p = write(tmp_path, "a,b\n,5\n2,\n,\n,7\n8,8\n9,\n")
    ds = load_csv(p, max_gap=2)
    a, b = ds.values[:, 0], ds.values[:, 1]
    assert a.tolist() == [2, 2, 4, 6, 8, 9]  # leading edge = nearest; 2..8 over 3 steps
    assert b.tolist() == pytest.approx([5, 5 + 2 / 3, 6 + 1 / 3, 7, 8, 8])
    assert ds.report.interpolated == {"a": 3, "b": 3}
    assert ds.report.long_gaps == [] and ds.report.dropped_rows == 0


def test_long_gap_error_names_file_column_and_lines(tmp_path):
    p = write(tmp_path, "a,b\n1,1\n,2\n,3\n,4\n5,5\n")
    with pytest.raises(InputError) as e:
        load_csv(p, max_gap=2)
    msg = str(e.value)
    assert str(p) in msg and "'a'" in msg and "lines 3-5" in msg and "on_long_gap='drop'" in msg


def test_long_gap_drop_removes_rows_and_counts_them(tmp_path):
    p = write(tmp_path, "a,b,y\n1,1,0\n,2,0\n,3,1\n,4,0\n5,,1\n6,6,0\n")
    ds = load_csv(p, label_column="y", max_gap=2, on_long_gap="drop")
    assert ds.report.long_gaps == [("a", 3, 5)]
    assert ds.report.dropped_rows == 3
    assert ds.lines.tolist() == [2, 6, 7]
    assert ds.labels.tolist() == [0, 1, 0]
    assert ds.values.tolist() == [[1, 1], [5, 3.5], [6, 6]]  # b's short gap filled across the join
    assert not np.isnan(ds.values).any()
    assert any("dropped 3" in line for line in ds.report.lines())


def test_constant_column_reported_not_dropped(tmp_path):
    ds = load_csv(write(tmp_path, "a,c\n1,7\n2,7\n3,7\n"))
    assert ds.report.constant_columns == ["c"]
    assert ds.values.shape == (3, 2)


@pytest.mark.parametrize(
    "cell, needle",
    [("2", "expected a label 0 or 1"), ("", "missing label"), ("yes", "expected a number, got 'yes'")],
)
def test_label_validation_names_line_and_column(tmp_path, cell, needle):
    p = write(tmp_path, f"a,lab\n1,0\n2,{cell}\n")
    with pytest.raises(InputError) as e:
        load_csv(p, label_column="lab")
    assert needle in str(e.value) and "line 3, column 'lab'" in str(e.value)


def test_bad_row_is_an_error(tmp_path):
    p = write(tmp_path, "a,b\n1,2\n3,oops\n")
    with pytest.raises(InputError, match=r"line 3, column 'b': expected a number, got 'oops'"):
        load_csv(p, features=["a", "b"])
    p = write(tmp_path, "a,b\n1,2\n3\n", "short.csv")
    with pytest.raises(InputError, match=r"short.csv, line 3: expected 2 fields .* got 1"):
        load_csv(p)


def test_non_numeric_beyond_inference_sample_still_fails(tmp_path):
    rows = "".join(f"{i},{i}\n" for i in range(250))
    p = write(tmp_path, "a,b\n" + rows + "5,bad\n")
    with pytest.raises(InputError, match="line 252, column 'b'"):
        load_csv(p)


def test_missing_file_and_missing_feature(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_csv(tmp_path / "nope.csv")
    p = write(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(InputError, match=r"missing feature column\(s\) 'c'"):
        load_csv(p, features=["a", "c"])


def test_too_few_rows_and_all_missing_column(tmp_path):
    with pytest.raises(InputError, match="at least 2 data rows, got 1"):
        load_csv(write(tmp_path, "a\n1\n"))
    with pytest.raises(InputError, match="'b': has no values"):
        load_csv(write(tmp_path, "a,b\n1,\n2,\n", "e.csv"), features=["a", "b"])


def test_option_validation(tmp_path):
    p = write(tmp_path, "a\n1\n2\n")
    with pytest.raises(ValueError, match="on_long_gap"):
        load_csv(p, on_long_gap="skip")
    with pytest.raises(ValueError, match="max_gap"):
        load_csv(p, max_gap=-1)


def test_cleaning_report_lines_when_clean():
    assert CleaningReport().lines() == ["clean: no missing values, no constant columns"]


@pytest.mark.parametrize("n", [7, 20, 101, 1000])
def test_time_split_contiguous_ordered_complete(n):
    tr, va, te = time_split(n)
    assert tr.start == 0 and tr.stop == va.start and va.stop == te.start and te.stop == n
    assert all(s.stop - s.start >= 1 for s in (tr, va, te))


def test_time_split_fractions():
    tr, va, te = time_split(100, (0.5, 0.25, 0.25))
    assert (tr, va, te) == (slice(0, 50), slice(50, 75), slice(75, 100))


@pytest.mark.parametrize(
    "n, fr, needle",
    [
        (100, (0.7, 0.2, 0.2), "sum to 1"),
        (100, (1.0, 0.0, 0.0), "> 0"),
        (100, (0.5, 0.5), "3 fractions"),
        (2, (0.7, 0.15, 0.15), "too few"),
        (3, (0.7, 0.15, 0.15), "too few"),
        (4, (0.8, 0.1, 0.1), "too few"),
    ],
)
def test_time_split_errors(n, fr, needle):
    with pytest.raises(ValueError, match=needle):
        time_split(n, fr)


def test_exclude_keeps_columns_out_of_automatic_choice(tmp_path):
    p = write(tmp_path, "datetime;a;anomaly;changepoint\nt;1;0;0\nt;2;1;1\n")
    ds = load_csv(p, label_column="anomaly", exclude=["changepoint"])
    assert ds.feature_names == ("a",)
    with pytest.raises(InputError, match="cannot exclude missing column"):
        load_csv(p, exclude=["nope"])
