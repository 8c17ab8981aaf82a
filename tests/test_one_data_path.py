"""One data path: the same pixels through every entry point, and the same rows from the Space and `abaw-hf predict`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from skimage import data

from abaw_hf.cli import main as cli_main
from abaw_hf.data import column_array
from abaw_hf.extraction import read_face_image
from abaw_hf.extractors import create_extractor
from abaw_hf.faces.images import flatten_alpha, read_image_file
from abaw_hf.pipeline import AffectPipeline, read_image
from abaw_hf.space import EXAMPLES_DIR
from abaw_hf.space import app as space_app

CLIP = EXAMPLES_DIR / "astronaut_clip.mp4"


def astronaut_face() -> np.ndarray:
    return data.astronaut()[40:232, 130:322]  # 192 px around the face: small files, still a detectable face


def exif_rotated_jpeg(pixels: np.ndarray) -> bytes:
    """A JPEG whose stored pixels are the picture turned 90°, with EXIF orientation 6 saying to turn it back."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(pixels, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_kinds(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray | None]]:
    """One file per image kind, with the pixels the decoding policy must give (None: checked otherwise)."""
    folder = tmp_path_factory.mktemp("kinds")
    face = astronaut_face()
    gray8 = np.asarray(Image.fromarray(face).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257  # the same photo at 16 bits: white is 65535
    rgba = np.dstack([face, np.linspace(0, 255, face.shape[1], dtype=np.uint8)[None, :].repeat(face.shape[0], 0)])
    kinds = {}

    def save(name: str, image: Image.Image, expected, **options):
        path = folder / name
        image.save(path, **options)
        kinds[name] = (path, expected)

    save("rgb.png", Image.fromarray(face), face)
    save("gray8.png", Image.fromarray(gray8), np.repeat(gray8[:, :, None], 3, axis=2))
    save("gray16.png", Image.fromarray(gray16, "I;16"), np.repeat(gray8[:, :, None], 3, axis=2))
    save("gray16.tif", Image.fromarray(gray16, "I;16"), np.repeat(gray8[:, :, None], 3, axis=2))
    save("rgba.png", Image.fromarray(rgba, "RGBA"), flatten_alpha(rgba))
    save("gray_alpha.png", Image.fromarray(np.dstack([gray8, rgba[:, :, 3]]), "LA"),
         flatten_alpha(np.dstack([gray8, rgba[:, :, 3]])))
    palette = Image.fromarray(face).quantize(64)
    save("palette.png", palette, np.asarray(palette.convert("RGB")))
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    save("palette_transparent.png", transparent, flatten_alpha(np.asarray(transparent.convert("RGBA"))))
    cmyk = Image.fromarray(face).convert("CMYK")
    save("cmyk.jpg", cmyk, None, quality=95)
    (folder / "exif_rotated.jpg").write_bytes(exif_rotated_jpeg(face))
    kinds["exif_rotated.jpg"] = (folder / "exif_rotated.jpg", None)
    return kinds


def test_every_entry_point_decodes_each_image_kind_the_same(image_kinds, tmp_path):
    names = sorted(image_kinds)
    build_vectors, extract_vectors = _build_and_extract(image_kinds, names, tmp_path)
    for position, name in enumerate(names):
        path, expected = image_kinds[name]
        decoded = read_image_file(path).pixels
        assert decoded.dtype == np.uint8 and decoded.shape[2] == 3, name
        np.testing.assert_array_equal(read_face_image(path).pixels, decoded, err_msg=f"extract: {name}")
        np.testing.assert_array_equal(read_image(path), decoded, err_msg=f"predict: {name}")
        # build --extractor is extract's path: the same vector from the same decoded pixels
        np.testing.assert_array_equal(build_vectors[position], extract_vectors[position], err_msg=f"build: {name}")
        if expected is not None:
            np.testing.assert_array_equal(decoded, expected, err_msg=name)
    face = astronaut_face()
    assert read_image_file(image_kinds["exif_rotated.jpg"][0]).pixels.shape == face.shape  # turned back upright
    assert np.abs(read_image_file(image_kinds["exif_rotated.jpg"][0]).pixels.astype(int) - face).mean() < 4
    assert np.abs(read_image_file(image_kinds["cmyk.jpg"][0]).pixels.astype(int) - face).mean() < 4


def _build_and_extract(image_kinds, names, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every kind through `abaw-hf build --extractor` and `abaw-hf extract`, as {video}/{frame:05d}.jpg (the
    decoder reads content, not names): the two feature columns, row i = names[i]."""
    import datasets

    (root / "frames" / "kinds").mkdir(parents=True)
    for frame, name in enumerate(names, start=1):
        (root / "frames" / "kinds" / f"{frame:05d}.jpg").write_bytes(image_kinds[name][0].read_bytes())
    header = "image,valence,arousal,expression," + ",".join(f"AU{n}" for n in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26))
    lines = [f"kinds/{frame:05d}.jpg,0,0,0,{','.join(['0'] * 12)}" for frame in range(1, len(names) + 1)]
    (root / "train.txt").write_text("\n".join([header, *lines]) + "\n")
    extractor = ["--extractor", "resnet18", "--random-init"]
    assert cli_main(["build", "--annotations", f"train={root / 'train.txt'}", "--images", str(root / "frames"),
                     *extractor, "--output", str(root / "built")]) == 0
    assert cli_main(["extract", "--frames", str(root / "frames"), "--annotations", str(root / "train.txt"), *extractor,
                     "--runtime", "torch", "--output", str(root / "extracted"), "--no-progress"]) == 0
    built = column_array(datasets.load_from_disk(str(root / "built" / "train")), "resnet18")
    extracted = column_array(datasets.load_from_disk(str(root / "extracted")), "resnet18")
    assert built[1].all() and extracted[1].all()  # every kind decoded: none is an unusable file
    return built[0], extracted[0]


@pytest.fixture
def space_model(tiny_model, space_model_provenance):
    """``space_model(**config)``: the Space tests' tiny model (resnet18 + fau, 16 wide, no dropout)."""
    return lambda **config: tiny_model(hidden_size=16, hidden_dropout_prob=0.0, max_window=64,
                                       extractors=space_model_provenance, **config)


def test_16_bit_photo_gives_the_face_and_features_of_its_8_bit_copy(image_kinds, space_model):
    eight, sixteen = image_kinds["gray8.png"][0], image_kinds["gray16.png"][0]
    extractor = create_extractor("resnet18", "msceleb", random_seed=3)
    # extract: the decoded crop goes through the extractor
    features = extractor.extract([read_face_image(eight).pixels, read_face_image(sixteen).pixels])
    assert np.array_equal(features[0].numpy(), features[1].numpy())
    # predict: detection, alignment, extractors and the model see the same picture
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        pipeline = AffectPipeline(space_model())
    try:
        table = pipeline.predict_images([eight, sixteen])
    finally:
        pipeline.close()
    assert table["face_found"].all()
    numbers = table.drop(columns=["source", "frame", "expression", "note"]).astype(float).to_numpy()
    np.testing.assert_array_equal(numbers[0], numbers[1])
    assert table.loc[0, "expression"] == table.loc[1, "expression"]


def _numeric(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["source", "expression", "note", "weights"]).astype(float)


def test_space_csv_equals_predict_on_a_real_video(tmp_path, space_model, served_space):
    """The Space streams the video in feeds and shows rows as they become final; its CSV is `abaw-hf predict`'s."""
    model_dir = tmp_path / "model"
    space_model(window=4, max_gap=2).save_pretrained(model_dir)  # the model's own window and gap, from its config
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        pipeline = AffectPipeline.from_pretrained(model_dir, batch_size=4)  # small batches: several partial results
    assert (pipeline.window, pipeline.max_gap) == (4, 2)
    space = space_app.AffectSpace(str(model_dir), pipeline=pipeline)
    try:
        with served_space(space) as url:
            job = Client(url, verbose=False, analytics_enabled=False).submit(handle_file(CLIP), api_name="/analyse_video")
            job.result()
            updates = job.outputs()
    finally:
        pipeline.close()
    space_csv = pd.read_csv(updates[-1][7])
    assert cli_main(["predict", str(CLIP), "-o", str(tmp_path / "predict.csv"), "--model", str(model_dir),
                     "--batch-size", "4"]) == 0
    predicted = pd.read_csv(tmp_path / "predict.csv")
    assert list(space_csv.columns) == list(predicted.columns) and len(space_csv) == len(predicted) == 30
    assert space_csv["face_found"].sum() > 10 and (~space_csv["face_found"]).sum() > 0  # the clip pans off the face
    np.testing.assert_allclose(_numeric(space_csv), _numeric(predicted), rtol=0, atol=1e-6, equal_nan=True)
    for column in ("source", "expression", "note", "weights"):
        assert space_csv[column].fillna("").tolist() == predicted[column].fillna("").tolist()
    # progressive: each partial CSV is a prefix of the final one, rows never change once shown
    partial = [pd.read_csv(update[7]) for update in updates[1:-1]]
    assert len(partial) >= 2 and [len(p) for p in partial] == sorted({len(p) for p in partial})
    for table in partial:
        np.testing.assert_allclose(_numeric(table), _numeric(space_csv.iloc[: len(table)]), rtol=0, atol=1e-6,
                                   equal_nan=True)
