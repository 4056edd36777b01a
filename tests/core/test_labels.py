"""Label CSV import: what spreadsheets produce (BOM, encodings, delimiters), bad rows reported by line, real SQLite."""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sslinspect import labels as labels_mod
from sslinspect.data.scan import scan_project
from sslinspect.errors import DataError
from sslinspect.labels import import_labels, read_label_rows
from sslinspect.project import Project
from tests.core.image_cases import bgr_image, encode, write


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Images: a.png, b.png, sub/c.png, sub/ä ö.png, copy.png (= a.png), bad.png (unreadable), gone.png (deleted)."""
    img = tmp_path / "images"
    write(img / "a.png", encode(".png", bgr_image(seed=1)))
    write(img / "b.png", encode(".png", bgr_image(seed=2)))
    write(img / "sub" / "c.png", encode(".png", bgr_image(seed=3)))
    write(img / "sub" / "ä ö.png", encode(".png", bgr_image(seed=4)))
    write(img / "copy.png", encode(".png", bgr_image(seed=1)))
    write(img / "bad.png", b"not a png")
    write(img / "gone.png", encode(".png", bgr_image(seed=5)))
    p = Project.create(tmp_path / "p.sslproj")
    p.add_source(img)
    scan_project(p, workers=1)
    (img / "gone.png").unlink()
    scan_project(p, workers=1)
    return p


def _labels(p: Project) -> dict[str, str]:
    out = {}
    for image_id, label in p.store.labels().items():
        rec = p.store.image(image_id)
        assert rec is not None
        out[rec.relpath] = label
    return out


def _csv(tmp_path: Path, text: str, *, encoding: str = "utf-8", name: str = "labels.csv") -> Path:
    path = tmp_path / "images" / name
    path.write_bytes(text.encode(encoding))
    return path


def test_valid_rows_import_and_bad_rows_are_reported_by_line(tmp_path: Path, project: Project) -> None:
    path = _csv(
        tmp_path,
        "path,label\n"
        "a.png,good\n"  # 2
        "sub/c.png,scratch\n"  # 3
        "nope.png,dent\n"  # 4
        "b.png,\n"  # 5
        "bad.png,dent\n"  # 6
        "gone.png,dent\n"  # 7
        "b.png,a/b\n"  # 8
        "lonely\n"  # 9
        ",dent\n"  # 10
        "\n"
        "sub/c.png,scratch\n"  # 12 same again: fine
        "sub/c.png,dent\n",  # 13 contradiction
    )
    result = import_labels(project, path)
    assert _labels(project) == {"a.png": "good", "sub/c.png": "scratch"}
    assert result.imported == 2 and result.unchanged == 0
    assert result.problems == [
        "labels.csv:4: unknown image 'nope.png' (not in the project's scanned folders)",
        "labels.csv:5: empty label for 'b.png'",
        "labels.csv:6: image 'bad.png' is unreadable and cannot be labelled",
        "labels.csv:7: image 'gone.png' is missing on disk and cannot be labelled",
        "labels.csv:8: invalid class name 'a/b': 1–64 characters, no commas, slashes or surrounding spaces",
        "labels.csv:9: expected 'path,label', got 1 column(s)",
        "labels.csv:10: empty path",
        "labels.csv:13: 'sub/c.png' already labelled 'scratch' on line 3; 'dent' ignored",
    ]
    assert project.classes == ["good", "scratch"] and result.counts == {"good": 1, "scratch": 1}
    again = import_labels(project, path)
    assert (again.imported, again.unchanged) == (0, 2)


def test_a_duplicate_is_labelled_once_on_its_first_copy(tmp_path: Path, project: Project) -> None:
    result = import_labels(project, _csv(tmp_path, "copy.png,scratch\na.png,scratch\n"))
    assert _labels(project) == {"a.png": "scratch"} and result.imported == 1 and not result.problems


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("path,label\r\na.png,good\r\nsub/ä ö.png,Kratzer\r\n", "utf-8-sig"),  # Excel "CSV UTF-8"
        ("path;label\na.png;good\nsub/ä ö.png;Kratzer\n", "cp1252"),  # German Excel: semicolons, ANSI
        ("path\tlabel\na.png\tgood\nsub/ä ö.png\tKratzer\n", "utf-16"),  # "Unicode text" export
        ("a.png,good\nsub/ä ö.png,Kratzer\n", "utf-32"),
        ("Filename;Class;Comment\na.png;good;ok\nsub/ä ö.png;Kratzer;seen twice\n", "utf-8"),
    ],
)
def test_spreadsheet_variants(tmp_path: Path, project: Project, text: str, encoding: str) -> None:
    result = import_labels(project, _csv(tmp_path, text, encoding=encoding))
    assert not result.problems
    assert _labels(project) == {"a.png": "good", "sub/ä ö.png": "Kratzer"}


def test_labels_match_classes_case_insensitively(tmp_path: Path, project: Project) -> None:
    result = import_labels(project, _csv(tmp_path, "a.png,GOOD\nb.png,Scratch\nsub/c.png,scratch\n"))
    assert not result.problems
    assert _labels(project) == {"a.png": "good", "b.png": "Scratch", "sub/c.png": "Scratch"}
    assert project.classes == ["good", "Scratch"]


def test_paths_absolute_source_relative_and_windows_style(tmp_path: Path, project: Project) -> None:
    elsewhere = tmp_path / "labels" / "l.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f"{tmp_path / 'images' / 'a.png'},good\nsub\\c.png,dent\nb.png,dent\n")
    result = import_labels(project, elsewhere)
    assert not result.problems
    assert _labels(project) == {"a.png": "good", "sub/c.png": "dent", "b.png": "dent"}


def test_quoted_fields_with_delimiters_inside(tmp_path: Path, project: Project) -> None:
    result = import_labels(project, _csv(tmp_path, '"a.png","good"\n"b.png","dent; deep"\n'))
    assert not result.problems and _labels(project) == {"a.png": "good", "b.png": "dent; deep"}


def test_unreadable_label_files(tmp_path: Path, project: Project) -> None:
    with pytest.raises(DataError, match="label file not found"):
        import_labels(project, tmp_path / "none.csv")
    binary = _csv(tmp_path, "", name="x.csv")
    binary.write_bytes(encode(".png", bgr_image()))
    with pytest.raises(DataError, match="binary data, not a CSV file"):
        import_labels(project, binary)
    undecodable = _csv(tmp_path, "", name="y.csv")
    undecodable.write_bytes(b"a.png,\x81\x8d\n")  # invalid UTF-8 and undefined in Windows-1252
    with pytest.raises(DataError, match="not a text file in a known encoding"):
        import_labels(project, undecodable)


def test_ambiguous_delimiter_goes_to_the_split_that_names_image_files(tmp_path: Path, project: Project) -> None:
    # no header; `,` and `;` both split every row in two: only `;` leaves image file names in the first column
    rows, problems = read_label_rows(_csv(tmp_path, "a,b.png;good\nc,d.png;scratch\n"))
    assert problems == [] and [(p, lab) for _, p, lab in rows] == [("a,b.png", "good"), ("c,d.png", "scratch")]


def test_huge_label_file_is_refused_before_reading(tmp_path: Path, project: Project) -> None:
    huge = tmp_path / "images" / "huge.csv"
    with huge.open("wb") as fh:  # sparse: 100 MB on paper, nothing on disk
        fh.truncate(100 * 2**20)
    with pytest.raises(DataError, match=r"huge.csv: label file too large \(100 MB > 64 MB\)"):
        import_labels(project, huge)


def test_row_limit(tmp_path: Path, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labels_mod, "MAX_ROWS", 2)
    result = import_labels(project, _csv(tmp_path, "a.png,good\nb.png,good\nsub/c.png,good\n"))
    assert result.imported == 2 and result.problems == ["labels.csv:3: more than 2 rows; the rest is ignored"]


# -- property-based --------------------------------------------------------------------------------------------------
_CELL_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85\ufeff")
_cell = st.text(_CELL_CHARS, min_size=1, max_size=20).map(str.strip).filter(bool)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(_cell, _cell), min_size=1, max_size=15),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
    header=st.booleans(),
    crlf=st.booleans(),
)
def test_written_csv_reads_back_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str]],
    delimiter: str,
    encoding: str,
    header: bool,
    crlf: bool,
) -> None:
    """Whatever a spreadsheet writes with the csv module's quoting rules comes back as the same (path, label) rows."""
    assume(rows[0][0].lower() not in labels_mod._PATH_HEADERS or rows[0][1].lower() not in labels_mod._LABEL_HEADERS)
    if not header:  # `0;,0` alone is `0;` + `0` as much as `0` + `,0`: only the header could tell
        assume(not any(d in c for r in rows for c in r for d in ",;\t" if d != delimiter))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    if header:
        writer.writerow(["path", "label"])
    writer.writerows(rows)
    try:
        raw = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        assume(False)
        return
    if encoding == "cp1252":
        try:
            raw.decode("utf-8")
            assume(not any(ord(c) > 127 for r in rows for c in "".join(r)))  # ambiguous bytes: read as UTF-8
        except UnicodeDecodeError:
            pass
    path = tmp_path_factory.mktemp("csv") / "l.csv"
    path.write_bytes(raw)
    parsed, problems = read_label_rows(path)
    assert problems == []
    assert [(p, lab) for _, p, lab in parsed] == rows


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400) | st.text(string.printable + "äö;,\t\"'", max_size=400).map(str.encode))
def test_any_bytes_parse_or_fail_with_data_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("csv") / "l.csv"
    path.write_bytes(data)
    try:
        parsed, problems = read_label_rows(path)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    assert all(p and lab and p == p.strip() and lab == lab.strip() for _, p, lab in parsed)
    assert [line for line, _, _ in parsed] == sorted(line for line, _, _ in parsed)
    assert all("\n" not in msg for msg in problems)
