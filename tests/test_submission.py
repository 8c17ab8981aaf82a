"""ABAW MTL submission files: exact format, listed order, missing features, and the checker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abaw_hf.evaluation import FramePredictions
from abaw_hf.postprocess import smooth_predictions
from abaw_hf.submission import (
    SubmissionError,
    check_submission,
    read_test_list,
    submission_text,
)

# The test list deliberately lists frames in an order different from the dataset's (video, frame) order,
# and leaves out a dataset frame (10/00002), which still takes part in smoothing.
TEST_LIST = """image,valence,arousal,expression,aus
video2_1/00007.jpg,
10/00001.jpg,
10/00003.jpg,
video2_1/00005.jpg,
"""

# Hand-written from the predictions below: 6 decimals, VA clipped to [-1, 1], no "-0.000000",
# expression = argmax, AU_i = 1 when p_i >= threshold_i (thresholds 0.5 for AU1..AU10, 0.7 for AU12..AU26).
EXPECTED = """image,valence,arousal,expression,aus
video2_1/00007.jpg,0.333333,0.250000,6,1,0,1,0,1,0,1,0,1,0,1,0
10/00001.jpg,0.123457,-0.500000,4,1,1,1,1,1,1,0,0,0,0,0,0
10/00003.jpg,0.000000,1.000000,7,0,0,0,0,0,0,0,0,0,0,0,0
video2_1/00005.jpg,0.500000,-1.000000,0,1,1,1,1,1,1,1,1,1,1,1,1
"""

DATASET_VIDEO = np.array(["10", "10", "10", "video2_1", "video2_1"])
DATASET_FRAME = np.array([1, 2, 3, 5, 7])
THRESHOLDS = [0.5] * 6 + [0.7] * 6


def tiny_predictions() -> FramePredictions:
    expression = np.full((5, 8), 0.05)
    for row, label in enumerate([4, 2, 7, 0, 6]):
        expression[row, label] = 0.65
    return FramePredictions(
        row_index=np.arange(5),
        valence_arousal=np.array([[0.1234567, -0.5], [0.0, 0.0], [-0.0000001, 1.2], [0.5, -1.0], [1 / 3, 0.25]]),
        expression_probs=expression,
        au_probs=np.array([[0.6] * 12, [0.2] * 12, [0.1] * 12, [0.75] * 12, [0.9, 0.1] * 6]),
    )


@pytest.fixture
def test_list_file(tmp_path: Path) -> Path:
    path = tmp_path / "MTL.txt"
    path.write_text(TEST_LIST)
    return path


def test_tiny_submission_matches_hand_written_file_byte_for_byte(tmp_path, test_list_file):
    text = submission_text(read_test_list(test_list_file), tiny_predictions(), DATASET_VIDEO, DATASET_FRAME,
                           au_thresholds=THRESHOLDS)
    written = tmp_path / "predictions.txt"
    written.write_text(text)
    expected = tmp_path / "expected.txt"
    expected.write_text(EXPECTED)
    assert written.read_bytes() == expected.read_bytes()
    assert check_submission(written, test_list_file) == 4


def test_smoothing_runs_over_dataset_rows_then_rows_are_taken_in_listed_order(test_list_file):
    predictions = tiny_predictions()
    text = submission_text(read_test_list(test_list_file), predictions, DATASET_VIDEO, DATASET_FRAME,
                           au_thresholds=THRESHOLDS, smoothing_sigma=1.0, max_gap=1)
    smoothed_va = smooth_predictions(predictions.valence_arousal, DATASET_VIDEO, DATASET_FRAME, sigma=1.0, max_gap=1)
    rows = [line.split(",") for line in text.splitlines()[1:]]
    # 10/00001 is smoothed with 10/00002 (unlisted) and 10/00003; video2_1's frames 5 and 7 are 2 > max_gap apart
    assert float(rows[1][1]) == pytest.approx(smoothed_va[0, 0], abs=1e-6)
    assert float(rows[1][1]) != pytest.approx(0.123457, abs=1e-3)
    assert rows[0][1:3] == ["0.333333", "0.250000"] and rows[3][1:3] == ["0.500000", "-1.000000"]


def test_listed_frame_without_features_is_an_error_that_lists_them(tmp_path):
    test_list = tmp_path / "MTL.txt"
    test_list.write_text(TEST_LIST + "10/00009.jpg,\nzz/00001.jpg,\n")
    with pytest.raises(SubmissionError, match=r"2 listed frame\(s\).*10/00009\.jpg \(line 6\).*zz/00001\.jpg \(line 7\)"):
        submission_text(read_test_list(test_list), tiny_predictions(), DATASET_VIDEO, DATASET_FRAME)
    present = np.array([True, True, False, True, True])  # 10/00003: every feature vector missing
    test_list.write_text(TEST_LIST)
    with pytest.raises(SubmissionError, match=r"1 listed frame\(s\).*10/00003\.jpg \(line 4\)"):
        submission_text(read_test_list(test_list), tiny_predictions(), DATASET_VIDEO, DATASET_FRAME, present=present)


# ----- the checker -------------------------------------------------------------------------------------------


def _variant(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "variant.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_checker_rejects_a_missing_row(tmp_path, test_list_file):
    lines = EXPECTED.splitlines()
    with pytest.raises(SubmissionError, match=r"3 rows, but .*MTL\.txt lists 4 frames"):
        check_submission(_variant(tmp_path, lines[:2] + lines[3:]), test_list_file)


def test_checker_rejects_a_wrong_order(tmp_path, test_list_file):
    lines = EXPECTED.splitlines()
    swapped = [lines[0], lines[2], lines[1], lines[3], lines[4]]
    with pytest.raises(SubmissionError, match=r"variant\.txt:2: image '10/00001\.jpg', but the test list has 'video2_1/00007\.jpg'"):
        check_submission(_variant(tmp_path, swapped), test_list_file)


def test_checker_rejects_expression_8_and_other_bad_values(tmp_path, test_list_file):
    lines = EXPECTED.splitlines()
    cells = lines[3].split(",")
    cells[3] = "8"
    with pytest.raises(SubmissionError, match=r"variant\.txt:4: expression '8' is not an integer 0\.\.7"):
        check_submission(_variant(tmp_path, lines[:3] + [",".join(cells)] + lines[4:]), test_list_file)
    bad = lines[1].split(",")
    bad[1], bad[-1] = "1.5", "2"
    with pytest.raises(SubmissionError, match=r"valence 1\.5 is outside \[-1, 1\].*\n.*AU values must be 0 or 1"):
        check_submission(_variant(tmp_path, [lines[0], ",".join(bad)] + lines[2:]), test_list_file)
    with pytest.raises(SubmissionError, match="header"):
        check_submission(_variant(tmp_path, ["image,valence,arousal,expression"] + lines[1:]), test_list_file)
    with pytest.raises(SubmissionError, match="expected 16 comma-separated values"):
        check_submission(_variant(tmp_path, lines[:4] + [lines[4] + ",0"]), test_list_file)
