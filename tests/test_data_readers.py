"""ABAW annotation readers on small files written here: MTL files, the test list, single-task folders."""

from __future__ import annotations

import numpy as np
import pytest

from abaw_hf.data import (
    AnnotationError,
    merge_annotations,
    read_mtl_annotations,
    read_mtl_test_list,
    read_single_task_folder,
)

HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
AUS_ON = ",".join(["1", "0"] * 6)
AUS_MISSING = ",".join(["-1"] * 12)


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mtl_file_keeps_markers_and_sorts_rows(tmp_path):
    path = write(
        tmp_path / "training_set_annotations.txt",
        [
            HEADER,
            f"video45_1/00002.jpg,0.25,-0.5,4,{AUS_ON}",
            f"116/01399.jpg,-5,-5,-1,{AUS_MISSING}",
            f"video45_1/00001.jpg,-0.1,0.3,7,{AUS_MISSING}",
        ],
    )
    rows = read_mtl_annotations(path)
    assert rows.video.tolist() == ["video45_1", "116", "video45_1"]
    assert rows.line.tolist() == [2, 3, 4]
    ordered = rows.sorted()
    assert list(zip(ordered.video.tolist(), ordered.frame.tolist())) == [
        ("116", 1399),
        ("video45_1", 1),
        ("video45_1", 2),
    ]
    assert ordered.valence.tolist() == pytest.approx([-5.0, -0.1, 0.25])
    assert ordered.expression.tolist() == [-1, 7, 4]
    assert ordered.aus[2].tolist() == [1, 0] * 6
    assert ordered.aus[0].tolist() == [-1] * 12
    assert rows.label_counts() == {"rows": 3, "va": 2, "expression": 2, "au": 1}


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        (f"116/00003.jpg,0.1,0.2,3,{AUS_ON},1", "expected 16 columns"),
        (f"116/00003.jpg,high,0.2,3,{AUS_ON}", "could not convert"),
        (f"116/00003.jpg,1.7,0.2,3,{AUS_ON}", "outside [-1, 1]"),
        (f"116/00003.jpg,0.1,0.2,9,{AUS_ON}", "expression 9"),
        ("116/00003.jpg,0.1,0.2,3," + ",".join(["3"] + ["0"] * 11), "AU value 3"),
        (f"116/frame3.jpg,0.1,0.2,3,{AUS_ON}", "not '<video>/<frame number>.jpg'"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_line, reason):
    path = write(tmp_path / "ann.txt", [HEADER, f"116/00001.jpg,0,0,0,{AUS_ON}", bad_line])
    with pytest.raises(AnnotationError) as error:
        read_mtl_annotations(path)
    assert f"{path}:3:" in str(error.value)
    assert reason in str(error.value)


def test_skip_bad_rows_counts_and_shows_first_lines(tmp_path):
    path = write(
        tmp_path / "ann.txt",
        [
            HEADER,
            f"116/00001.jpg,0,0,0,{AUS_ON}",
            f"116/00002.jpg,1.7,0,0,{AUS_ON}",
            f"116/00003.jpg,0,0,9,{AUS_ON}",
            f"116/00004.jpg,0.5,0.5,1,{AUS_ON}",
        ],
    )
    with pytest.warns(UserWarning, match="skipped 2 malformed rows"):
        rows = read_mtl_annotations(path, skip_bad_rows=True)
    assert rows.frame.tolist() == [1, 4]
    assert rows.num_skipped == 2
    assert rows.skipped[0].startswith(f"{path}:3:") and rows.skipped[1].startswith(f"{path}:4:")


def test_wrong_header_and_duplicates(tmp_path):
    with pytest.raises(AnnotationError, match=":1: expected the header"):
        read_mtl_annotations(write(tmp_path / "a.txt", ["image,valence", "116/00001.jpg,0"]))
    path = write(tmp_path / "b.txt", [HEADER, f"116/00001.jpg,0,0,0,{AUS_ON}", f"116/00001.jpg,0,0,1,{AUS_ON}"])
    with pytest.raises(AnnotationError, match=r"1 duplicate \(video, frame\) rows.*116/00001 \(lines 2 and 3\)"):
        read_mtl_annotations(path).sorted()


def test_test_list_has_no_labels(tmp_path):
    path = write(tmp_path / "MTL.txt", ["image,valence,arousal,expression,aus", "7/00010.jpg,", "7/00011.jpg,"])
    rows = read_mtl_test_list(path)
    assert rows.frame.tolist() == [10, 11]
    assert rows.label_counts() == {"rows": 2, "va": 0, "expression": 0, "au": 0}
    bad = write(tmp_path / "bad.txt", ["image,valence,arousal,expression,aus", "7/x.jpg,"])
    with pytest.raises(AnnotationError, match=f"{bad}:2:"):
        read_mtl_test_list(bad)


def test_single_task_folders_and_merge(tmp_path):
    va_dir, expr_dir, au_dir = (tmp_path / n for n in ("VA", "EXPR", "AU"))
    for folder in (va_dir, expr_dir, au_dir):
        folder.mkdir()
    write(va_dir / "12-24.txt", ["valence,arousal", "0.1,0.2", "-5,-5", "0.3,-0.4"])
    write(expr_dir / "12-24.txt", ["Neutral,Anger,...", "4", "-1", "6"])
    write(au_dir / "12-24.txt", ["AU1,...", AUS_ON, AUS_ON, AUS_MISSING])
    va = read_single_task_folder(va_dir, "va")
    assert va.frame.tolist() == [1, 3]  # line N+1 is frame N; the -5 frame is dropped
    assert va.expression.tolist() == [-1, -1]
    expr = read_single_task_folder(expr_dir, "expr")
    au = read_single_task_folder(au_dir, "au")
    merged = merge_annotations([va, expr, au])
    assert merged.frame.tolist() == [1, 2, 3]
    assert merged.valence.tolist() == pytest.approx([0.1, -5.0, 0.3])
    assert merged.expression.tolist() == [4, -1, 6]
    assert merged.aus[:, 0].tolist() == [1, 1, -1]
    with pytest.raises(AnnotationError, match="valence/arousal is labelled twice for 12-24/00001"):
        merge_annotations([va, va])
    write(va_dir / "bad.txt", ["valence,arousal", "0.1"])
    with pytest.raises(AnnotationError, match=r"bad.txt:2: expected 2 columns"):
        read_single_task_folder(va_dir, "va")
    with pytest.raises(ValueError, match="task must be one of"):
        read_single_task_folder(va_dir, "valence")


def test_unsorted_rows_sorted_by_video_then_frame():
    from abaw_hf.data import Annotations

    rows = Annotations.unlabelled(["b", "a", "b", "a"], [2, 9, 1, 3])
    assert not rows.is_sorted()
    ordered = rows.sorted()
    assert ordered.is_sorted()
    assert list(zip(ordered.video.tolist(), ordered.frame.tolist())) == [("a", 3), ("a", 9), ("b", 1), ("b", 2)]
    assert np.array_equal(rows.sort_order(), [3, 1, 2, 0])
