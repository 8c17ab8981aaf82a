"""Temporal windows: the index at video ends and gaps, eval coverage, the collator's batch, bad values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.data import (
    Annotations,
    FeatureWindows,
    WindowCollator,
    build_from_arrays,
    build_window_index,
    rows_from_windows,
    window_dataloader,
)


def test_index_splits_at_videos_and_long_gaps():
    videos = np.array(["a"] * 10 + ["b"] * 3)
    frames = np.array([1, 2, 3, 5, 6, 40, 41, 42, 43, 44, 7, 8, 9])  # a: a gap of 2 (kept), of 34 (> max_gap)
    train = build_window_index(videos, frames, window_size=3, stride=2, max_gap=10, mode="train")
    # run a[0:5]: starts 0, 2 (full windows) ; run a[5:10]: 5, 7 ; video b: 10 (exactly one window)
    assert train.tolist() == [[0, 3], [2, 3], [5, 3], [7, 3], [10, 3]]
    evaluation = build_window_index(videos, frames, window_size=3, max_gap=10, mode="eval")
    assert evaluation.tolist() == [[0, 3], [3, 2], [5, 3], [8, 2], [10, 3]]
    covered = np.concatenate([np.arange(s, s + n) for s, n in evaluation])
    assert covered.tolist() == list(range(13))  # every row exactly once
    # a run shorter than the window gives one short window; the tail of a long run is covered in train mode
    assert build_window_index(videos[:5], frames[:5], window_size=8, mode="train").tolist() == [[0, 5]]
    assert build_window_index(["v"] * 7, np.arange(7), window_size=4, stride=2).tolist() == [[0, 4], [2, 4], [3, 4]]
    # max_span: a window's frame offsets stay below it (frames 40..44 span 4 < 5; 1..6 would span 5)
    spans = build_window_index(videos, frames, window_size=8, max_gap=10, mode="eval", max_span=5)
    assert spans.tolist() == [[0, 4], [4, 1], [5, 5], [10, 3]]
    for first, count in spans:
        assert frames[first + count - 1] - frames[first] < 5
    with pytest.raises(ValueError, match="sorted"):
        build_window_index(["a", "a"], [2, 1])
    with pytest.raises(ValueError, match="mode"):
        build_window_index(["a"], [1], mode="test")


def small_dataset(tmp_path, shard_size=4, nan_at=None):
    rows = Annotations.unlabelled(["a"] * 6 + ["b"] * 3, [1, 2, 3, 7, 8, 9, 1, 2, 100])
    rows.valence = np.linspace(-0.5, 0.5, 9).astype(np.float32)
    rows.arousal = np.linspace(0.5, -0.5, 9).astype(np.float32)
    rows.expression = np.array([0, 1, 2, 3, 4, 5, 6, 7, -1], np.int8)
    rows.aus = np.tile(np.arange(12) % 2, (9, 1)).astype(np.int8)
    rows.valence[4] = rows.arousal[4] = -5
    x = np.arange(9 * 3, dtype=np.float32).reshape(9, 3)
    if nan_at is not None:
        x[nan_at] = np.nan
    fau = np.ones((9, 2), np.float32)
    present = {"fau": np.array([1, 1, 0, 1, 1, 1, 1, 0, 1], bool)}
    dataset = build_from_arrays(rows, {"x": x, "fau": fau}, tmp_path / "ds", present=present, shard_size=shard_size, progress=False)
    return dataset, x


def test_collated_batch_contents_padding_and_chunk_crossing(tmp_path):
    dataset, x = small_dataset(tmp_path, shard_size=4)  # shards of 4 rows: windows cross Arrow chunks
    windows = FeatureWindows(dataset, window_size=4, max_gap=3, mode="eval")
    assert windows.windows.tolist() == [[0, 3], [3, 3], [6, 2], [8, 1]]  # a: 1,2,3 | 7,8,9 ; b: 1,2 | 100
    batch = WindowCollator(windows.feature_dims, 4)([windows[i] for i in range(len(windows))])
    same = WindowCollator(windows.feature_dims, 4)(windows.__getitems__(list(range(len(windows)))))  # the DataLoader's batched fetch
    assert all(torch.equal(same["features"][n], batch["features"][n]) for n in ("x", "fau"))
    only_x = WindowCollator({"x": 3}, 4)(windows[1])  # a model may use a subset of the columns
    assert list(only_x["features"]) == ["x"] and torch.equal(only_x["features"]["x"][0], batch["features"]["x"][1])
    with pytest.raises(ValueError, match="not among the windows"):
        WindowCollator({"x": 5}, 4)(windows[1])
    assert set(batch) == {
        "features", "feature_mask", "attention_mask", "frame_index", "valence_arousal_labels",
        "expression_labels", "au_labels", "row_index",
    }  # fmt: skip
    assert batch["features"]["x"].shape == (4, 4, 3) and batch["features"]["x"].dtype == torch.float32
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert batch["frame_index"][1].tolist() == [0, 1, 2, 0]  # frames 7, 8, 9 relative to the window start
    assert batch["row_index"].tolist() == [[0, 1, 2, -1], [3, 4, 5, -1], [6, 7, -1, -1], [8, -1, -1, -1]]
    np.testing.assert_allclose(batch["features"]["x"][1, :3].numpy(), x[3:6])  # rows 3..5 span shards 0 and 1
    assert not batch["features"]["x"][1, 3].any()
    assert batch["feature_mask"]["fau"][0].tolist() == [True, True, False, False]
    assert not batch["features"]["fau"][0, 2].any()  # a missing vector is zeros, flagged in feature_mask
    assert batch["valence_arousal_labels"][1, 1].tolist() == [-5.0, -5.0]  # row 4: VA missing
    assert batch["valence_arousal_labels"][1, 0].tolist() == pytest.approx([-0.125, 0.125])
    assert batch["valence_arousal_labels"][0, 3].tolist() == [-5.0, -5.0]
    assert batch["expression_labels"][3].tolist() == [-1, -1, -1, -1]
    assert batch["expression_labels"][0].tolist() == [0, 1, 2, -1]
    assert batch["au_labels"][0, 0].tolist() == [0, 1] * 6 and batch["au_labels"][0, 3].tolist() == [-1] * 12

    model = AbawFusionModel(AbawFusionConfig(feature_dims={"x": 3, "fau": 2}, hidden_size=8, num_hidden_layers=1,
                                             num_attention_heads=2, max_window=8))  # fmt: skip
    row_index = batch.pop("row_index")
    output = model(**batch)
    assert torch.isfinite(output.loss)
    per_row = rows_from_windows(row_index.numpy(), output.valence_arousal.detach().numpy(), len(dataset))
    assert per_row.shape == (9, 2)


def test_rows_from_windows_rejects_double_or_missing_rows():
    row_index = np.array([[0, 1, -1], [1, 2, -1]])
    with pytest.raises(ValueError, match="0 rows never predicted, 1 predicted more than once"):
        rows_from_windows(row_index, np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="1 rows never predicted"):
        rows_from_windows(np.array([[0, 1, -1]]), np.zeros((1, 3)), 3)


def test_nan_in_features_names_video_and_frame():
    import datasets

    from abaw_hf.data import dataset_features

    x = np.zeros((6, 3), np.float32)
    x[4, 1] = np.inf  # row 4 = video b, frame 9
    table = {
        "video": ["a", "a", "a", "b", "b", "b"], "frame": [1, 2, 3, 8, 9, 10], "valence": [0.0] * 6,
        "arousal": [0.0] * 6, "expression": [0] * 6, "aus": [[0] * 12] * 6, "x": x.tolist(),
    }  # fmt: skip
    dataset = datasets.Dataset.from_dict(table, features=dataset_features({"x": 3}))
    with pytest.raises(ValueError, match=r"feature 'x' has NaN or Inf at video 'b' frame 9 \(dataset row 4\)"):
        FeatureWindows(dataset, window_size=4, mode="eval")
    unchecked = FeatureWindows(dataset, window_size=4, mode="eval", check_finite=False)
    assert WindowCollator(unchecked.feature_dims, 4)(unchecked[0])["features"]["x"].shape == (1, 4, 3)


def test_dataloader_train_shuffles_deterministically_and_workers_match(tmp_path):
    dataset, _ = small_dataset(tmp_path)
    first = [b["row_index"][:, 0].tolist() for b in window_dataloader(dataset, window_size=2, max_gap=3, batch_size=2, seed=3)]
    again = [b["row_index"][:, 0].tolist() for b in window_dataloader(dataset, window_size=2, max_gap=3, batch_size=2, seed=3)]
    assert first == again
    assert sorted(sum(first, [])) == [0, 1, 3, 4, 6, 8]  # windows of 2, stride 1, over runs a:1-3, a:7-9, b:1-2, b:100
    loader = window_dataloader(dataset, window_size=4, batch_size=3, mode="eval", num_workers=1)
    batches = list(loader)
    in_process = list(window_dataloader(dataset, window_size=4, batch_size=3, mode="eval"))
    for a, b in zip(batches, in_process):
        assert torch.equal(a["features"]["x"], b["features"]["x"]) and torch.equal(a["row_index"], b["row_index"])
    with pytest.raises(ValueError, match="indices mapping"):
        FeatureWindows(dataset.shuffle(seed=0))
    with pytest.raises(ValueError, match=r"\['nope'\] are not in the dataset"):
        FeatureWindows(dataset, feature_names=["nope"])


def test_one_window_loader_for_training_evaluation_and_tests(tmp_path):
    """`window_dataloader` is the one builder: training and evaluation build no DataLoader or windows by hand, and its
    train order is EpochShuffleSampler's (a function of seed and epoch only, as a resumed run needs)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "abaw_hf"
    for path in [package / "evaluation.py", *sorted((package / "training").glob("*.py"))]:
        calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)}
        assert not calls & {"DataLoader", "FeatureWindows", "WindowCollator"}, path.name
    assert "window_dataloader" in (package / "training" / "loop.py").read_text()
    dataset, _ = small_dataset(tmp_path)
    loader = window_dataloader(dataset, window_size=2, max_gap=3, batch_size=2, seed=5)
    orders = []
    for epoch in (0, 1, 0):
        loader.sampler.set_epoch(epoch)
        orders.append([row for batch in loader for row in batch["row_index"][:, 0].tolist()])
    assert orders[0] == orders[2] and sorted(orders[0]) == sorted(orders[1]) == [0, 1, 3, 4, 6, 8]
    assert orders[0] != orders[1] or len(orders[0]) < 3
