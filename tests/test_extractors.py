"""Extractor registry, preprocessing, batching and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from abaw_hf.extractors import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    Extractor,
    PreprocessConfig,
    create_extractor,
    get_extractor_class,
    list_extractors,
    preprocess_images,
    read_checkpoint,
)

DIMS = {"resnet18": 512, "poster2": 768, "poster": 512, "eac": 2048}


def quiet(name: str, variant: str | None = None) -> Extractor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_extractor(name, variant)


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """Three RGB uint8 images of different sizes (a real face among them)."""
    astronaut = skimage_data.astronaut()
    rng = np.random.default_rng(0)
    return [astronaut[:256, 128:384], astronaut[20:132, 200:312], rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)]


def test_registry_lists_creates_and_rejects_unknown_names():
    assert set(DIMS) <= set(list_extractors())
    assert get_extractor_class("poster2").name == "poster2"
    with pytest.raises(ValueError, match=r"unknown extractor 'vgg'.*'eac'.*'resnet18'"):
        create_extractor("vgg")
    with pytest.raises(ValueError, match=r"no variant '9cls'.*\['7cls', '8cls'\]"):
        create_extractor("poster2", "9cls")


def test_random_weights_warn_loudly_and_are_recorded():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        extractor = create_extractor("resnet18")
    record = extractor.provenance()
    assert record["random_init"] is True and record["checkpoint"] is None and record["sha256"] is None
    assert record["name"] == "resnet18" and record["dim"] == 512
    assert record["preprocessing"] == {
        "input_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "color_order": "RGB", "interpolation": "bilinear",
    }


@pytest.mark.parametrize(("name", "variant"), [("resnet18", None), ("poster2", "8cls"), ("poster", None), ("eac", "7cls")])
def test_dims_and_batch_size_invariance(name, variant, faces):
    extractor = quiet(name, variant)
    extractor.train()  # extract() must switch to eval itself (BatchNorm statistics) and restore the mode
    one_by_one = extractor.extract(faces[:2], batch_size=1)
    batched = extractor.extract(faces[:2], batch_size=2)
    assert extractor.training
    assert one_by_one.shape == (2, DIMS[name]) and one_by_one.dtype == torch.float32
    torch.testing.assert_close(one_by_one, batched, atol=1e-4, rtol=0)
    assert not torch.allclose(batched[0], batched[1])  # different faces, different features


def test_batchnorm_folded_copy_follows_the_weights():
    extractor = quiet("eac", "7cls")
    images = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        unfolded = extractor.eval()(images)
    torch.testing.assert_close(extractor.extract(images), unfolded, atol=1e-4, rtol=1e-4)
    folded = extractor.inference_module()
    assert not any(".bn" in key or key.startswith("features.1.") for key in folded.state_dict())
    assert len(extractor.state_dict()) == 320  # the extractor itself keeps the checkpoint's keys

    with torch.no_grad():
        extractor.features[1].running_mean.add_(3.0)  # e.g. another checkpoint loaded in place
    assert extractor.inference_module() is not folded
    with torch.inference_mode():
        torch.testing.assert_close(extractor.extract(images), extractor(images), atol=1e-4, rtol=1e-4)


def test_preprocess_resizes_normalises_and_accepts_every_input_form(faces):
    extractor = quiet("resnet18")
    pixels = extractor.preprocess(faces)
    assert pixels.shape == (3, 3, 224, 224) and pixels.dtype == torch.float32

    same_size = np.stack([faces[0]] * 2)  # 256x256 -> resized
    torch.testing.assert_close(extractor.preprocess(same_size), extractor.preprocess([faces[0], faces[0]]))
    assert torch.equal(extractor.preprocess(pixels), pixels)  # preprocessed floats pass through

    exact = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)  # no resize
    expected = (torch.from_numpy(exact).permute(0, 3, 1, 2) / 255.0 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(3, 1, 1)
    torch.testing.assert_close(extractor.preprocess(exact), expected)


def test_preprocessing_is_a_function_of_the_config_alone(faces):
    for extractor in (quiet("resnet18"), quiet("poster")):  # RGB and BGR checkpoints
        torch.testing.assert_close(preprocess_images(faces, extractor.preprocess_cfg), extractor.preprocess(faces),
                                   rtol=0, atol=0)
    with pytest.raises(ValueError, match="^worker: image 0 must be a uint8"):
        preprocess_images([faces[0].astype(np.float32)], PreprocessConfig(), "worker")


def test_every_extractor_answers_the_whole_interface(faces):
    resnet = quiet("resnet18")
    features, present = resnet.extract_with_mask(faces, batch_size=2)  # a network finds no faces: all present
    torch.testing.assert_close(features, resnet.extract(faces), rtol=0, atol=0)
    assert present.dtype == torch.bool and present.all() and len(present) == len(faces)
    assert not resnet.may_miss_faces and resnet.close() is None
    assert resnet.inference_module() is resnet or resnet.fold_batchnorm
    fau = get_extractor_class("fau")
    assert fau.may_miss_faces and fau.extract_with_mask is not Extractor.extract_with_mask
    assert fau.close is not Extractor.close


def test_poster_v1_flips_rgb_to_bgr_before_normalising():
    poster, resnet = quiet("poster"), quiet("resnet18")
    assert poster.preprocess_cfg.color_order == "BGR" and resnet.preprocess_cfg.color_order == "RGB"
    red = np.zeros((1, 224, 224, 3), np.uint8)
    red[..., 0] = 255
    bgr, rgb = poster.preprocess(red)[0], resnet.preprocess(red)[0]
    # Channel order is the checkpoint's; mean/std apply to channels in that order.
    assert torch.allclose(bgr[2], torch.tensor((1 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]))
    assert torch.allclose(bgr[0], torch.tensor(-IMAGENET_MEAN[0] / IMAGENET_STD[0]))
    assert torch.allclose(rgb[0], torch.tensor((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))


def test_vggface2_backbone_gets_caffe_bgr_mean_subtraction():
    extractor = quiet("eac", "vggface2")
    image = np.zeros((1, 224, 224, 3), np.uint8)
    image[..., 0], image[..., 2] = 200, 10  # R, B
    pixels = extractor.preprocess(image)[0]
    torch.testing.assert_close(pixels[0], torch.full((224, 224), 10 - 91.4953))  # B first
    torch.testing.assert_close(pixels[2], torch.full((224, 224), 200 - 131.0912))
    assert extractor.provenance()["preprocessing"]["color_order"] == "BGR"
    assert quiet("eac", "7cls").preprocess_cfg.color_order == "RGB"


def test_all_extractors_declare_imagenet_224_preprocessing():
    for name in DIMS:
        cfg = get_extractor_class(name).preprocess_cfg
        assert (cfg.input_size, cfg.mean, cfg.std) == (224, IMAGENET_MEAN, IMAGENET_STD)
        assert get_extractor_class(name).dim == DIMS[name]


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (np.zeros((2, 64, 64, 3), np.float32), "uint8"),
        ([np.zeros((64, 64), np.uint8)], r"image 0 must have shape HxWx3"),
        ([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 4), np.uint8)], r"image 1 must have shape HxWx3"),
        (np.zeros((64, 64, 3), np.uint8), r"\[N,H,W,3\]"),
        (torch.zeros(2, 3, 112, 112), r"\[N,3,224,224\]"),
        (torch.zeros(2, 224, 224, 3, dtype=torch.uint8), "preprocessed float batch"),
        ([], "no images"),
        ("face.jpg", "expected a list"),
    ],
)
def test_bad_images_say_what_was_expected(images, expected):
    with pytest.raises(ValueError, match=expected):
        quiet("resnet18").preprocess(images)


def test_preprocess_config_validates_colour_order():
    with pytest.raises(ValueError, match="RGB"):
        PreprocessConfig(color_order="RGBA")


def test_truncated_and_missing_checkpoints_name_the_file(tmp_path):
    good = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": quiet("resnet18").state_dict()}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth.*truncated or corrupt"):
        create_extractor("resnet18", checkpoint=truncated)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        create_extractor("resnet18", checkpoint=tmp_path / "nowhere.pth")
    not_a_state_dict = tmp_path / "optimizer.pth"
    torch.save({"lr": 0.1, "weights": torch.zeros(2)}, not_a_state_dict)
    with pytest.raises(CheckpointError, match=r"optimizer.pth: not a state dict.*\[lr\]"):
        read_checkpoint(not_a_state_dict)


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model1_state_dict", None])
def test_reader_unwraps_known_wrappers_and_strips_module_prefix(tmp_path, wrapper):
    weights = {"module.fc.weight": torch.ones(2, 2), "bn.bias": torch.zeros(2)}
    path = tmp_path / "ckpt.pth"
    torch.save(weights if wrapper is None else {wrapper: weights, "optimizer": {"lr": 1e-4}}, path)
    state = read_checkpoint(path)
    assert sorted(state) == ["bn.bias", "fc.weight"]
    assert torch.equal(state["fc.weight"], torch.ones(2, 2))


class RecorderMeter:
    """Like the training-curve recorder POSTER V2 saves beside its weights."""

    def __init__(self) -> None:
        self.epoch_losses = np.zeros((3, 2), np.float32)

    def __setstate__(self, state) -> None:
        raise AssertionError("a checkpoint's own classes must never run while loading weights")


def test_training_objects_beside_the_weights_load_inert_without_pickle(tmp_path):
    path = tmp_path / "raf-db-model_best.pth"
    torch.save({"epoch": 3, "state_dict": {"module.fc.bias": torch.ones(3)}, "recorder": RecorderMeter(),
                "best_acc": torch.tensor(92.2)}, path)
    state = read_checkpoint(path)
    assert list(state) == ["fc.bias"] and torch.equal(state["fc.bias"], torch.ones(3))
