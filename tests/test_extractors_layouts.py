"""Every official checkpoint layout loads strictly into its extractor; parameter counts match the papers."""

from __future__ import annotations

import hashlib
import pickle
import warnings

import numpy as np
import pytest
import torch
import torchvision

from abaw_hf.extractors import CheckpointError, create_extractor, official_layout, read_checkpoint

# layout -> (extractor, variant, how the official file wraps its weights)
LAYOUTS = {
    "resnet18_msceleb_torchvision": ("resnet18", "msceleb", "state_dict"),
    "poster_v2_7cls": ("poster2", "7cls", "state_dict"),
    "poster_v2_8cls": ("poster2", "8cls", "state_dict"),
    "poster_v1_large_7cls": ("poster", "large_7cls", "model_state_dict"),
    "eac_model_7cls": ("eac", "7cls", None),
    "vggface2_resnet50_backbone": ("eac", "vggface2", "numpy_pickle"),
}


def random_state_dict(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the layout's keys and shapes (valid values for integer buffers)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(0, 1000, shape, generator=generator)
        elif key.endswith("relative_position_index"):
            table_rows = (2 * int(round(shape[0] ** 0.5)) - 1) ** 2
            state[key] = torch.randint(0, table_rows, shape, generator=generator)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.02
    return state


def write_official_file(path, state: dict[str, torch.Tensor], wrapper: str | None) -> None:
    if wrapper == "numpy_pickle":  # the VGGFace2 release: a plain pickle of numpy arrays, no prefix
        with open(path, "wb") as handle:
            pickle.dump({k: v.numpy() for k, v in state.items() if "num_batches" not in k}, handle)
        return
    prefixed = {f"module.{k}": v for k, v in state.items()}  # saved from DataParallel
    torch.save(prefixed if wrapper is None else {wrapper: prefixed, "epoch": 7}, path)


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("official")
    files = {}
    for seed, (layout_name, (_, _, wrapper)) in enumerate(LAYOUTS.items()):
        state = random_state_dict(official_layout(layout_name), seed)
        path = folder / f"{layout_name}.pth"
        write_official_file(path, state, wrapper)
        files[layout_name] = (path, state)
    yield files
    for path, _ in files.values():
        path.unlink()


@pytest.mark.parametrize("layout_name", list(LAYOUTS))
def test_official_layout_loads_strictly(layout_name, official_files):
    name, variant, wrapper = LAYOUTS[layout_name]
    path, state = official_files[layout_name]
    extractor = create_extractor(name, variant, checkpoint=path, allow_pickle=wrapper == "numpy_pickle")

    own = extractor.state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == official_layout(layout_name)
    skipped = {k for k in state if wrapper == "numpy_pickle" and "num_batches" in k}
    assert all(torch.equal(own[k], state[k].to(own[k].dtype)) for k in state if k not in skipped)

    record = extractor.provenance()
    assert record["checkpoint"] == path.name
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["random_init"] is False and record["variant"] == variant and record["layout"] == layout_name

    features = extractor.extract(torch.randn(1, 3, 224, 224))
    assert features.shape == (1, extractor.dim) and features.dtype == torch.float32
    assert torch.isfinite(features).all()


def test_numpy_pickle_loads_without_the_opt_in(official_files):
    # numpy arrays in a dict are all the restricted unpickler allows, and all this release needs
    path, _ = official_files["vggface2_resnet50_backbone"]
    plain = create_extractor("eac", "vggface2", checkpoint=path)
    trusted = create_extractor("eac", "vggface2", checkpoint=path, allow_pickle=True)
    for (key, a), (_, b) in zip(plain.state_dict().items(), trusted.state_dict().items()):
        assert torch.equal(a, b), key


def test_another_architectures_checkpoint_is_rejected_listing_keys(official_files):
    path, _ = official_files["resnet18_msceleb_torchvision"]
    with pytest.raises(CheckpointError) as error:
        create_extractor("eac", "7cls", checkpoint=path)
    message = str(error.value)
    assert path.name in message
    assert "missing keys" in message and "features.4.0.conv1.weight" in message
    assert "unexpected keys" in message and "layer1.0.conv1.weight" in message


def test_variant_with_another_head_reports_shape_mismatch(official_files):
    path, _ = official_files["poster_v2_7cls"]
    with pytest.raises(CheckpointError, match=r"VIT\.head\.linear\.weight: checkpoint \(7, 768\) vs model \(8, 768\)"):
        create_extractor("poster2", "8cls", checkpoint=path)


def test_partial_load_only_when_allowed(tmp_path):
    state = random_state_dict(official_layout("resnet18_msceleb_torchvision"), seed=11)
    del state["fc.weight"], state["fc.bias"]
    state["projection.weight"] = torch.zeros(4, 4)
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": state}, path)

    with pytest.raises(CheckpointError, match="strict=False") as error:
        create_extractor("resnet18", checkpoint=path)
    assert "fc.weight" in str(error.value) and "projection.weight" in str(error.value)

    with pytest.warns(UserWarning, match=r"partial load.*2 weights keep their random values \['fc.weight', 'fc.bias'\]"):
        extractor = create_extractor("resnet18", checkpoint=path, strict=False)
    with pytest.warns(UserWarning, match="1 checkpoint entries ignored"):
        report = extractor.load_checkpoint(path, strict=False)
    assert report.missing == ["fc.weight", "fc.bias"] and report.unexpected == ["projection.weight"]
    assert torch.equal(extractor.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_resnet18_features_equal_torchvision_average_pool(official_files):
    """Our timm-based ResNet-18 computes what torchvision's (the checkpoint's own code) computes."""
    path, _ = official_files["resnet18_msceleb_torchvision"]
    extractor = create_extractor("resnet18", checkpoint=path)
    reference = torchvision.models.resnet18(num_classes=1000).eval()
    reference.load_state_dict(read_checkpoint(path))
    reference.fc = torch.nn.Identity()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(images)
    torch.testing.assert_close(extractor.extract(images), expected, atol=1e-5, rtol=1e-4)


def parameters_reaching(module: torch.nn.Module, output: torch.Tensor) -> int:
    module.zero_grad(set_to_none=True)
    output.sum().backward()
    return sum(p.numel() for p in module.parameters() if p.grad is not None)


def within_one_percent(value: float, expected: float) -> bool:
    return abs(value - expected) <= 0.01 * expected


@pytest.mark.parametrize(
    ("name", "variant", "expected"),
    [("resnet18", None, 11.7e6), ("poster", None, 71.9e6), ("eac", "7cls", 23.5e6)],
)
def test_parameter_counts(name, variant, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = create_extractor(name, variant)
    assert within_one_percent(extractor.num_parameters(), expected), extractor.num_parameters()


def test_vggface2_backbone_is_the_eac_resnet50():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = create_extractor("eac", "vggface2")
    trunk = sum(p.numel() for n, p in extractor.named_parameters() if not n.startswith("fc."))
    assert within_one_percent(trunk, 23.5e6), trunk


def test_poster_v2_parameters_used_and_stored():
    """43.7 M parameters reach the official output (expression logits) of the 59.0 M stored values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = create_extractor("poster2", "7cls")
    stored = sum(t.numel() for t in extractor.state_dict().values())
    used = parameters_reaching(extractor, extractor.logits(torch.randn(1, 3, 224, 224)))
    assert within_one_percent(stored, 59.0e6), stored
    assert within_one_percent(used, 43.7e6), used


def test_numpy_arrays_in_a_pickle_become_tensors(tmp_path):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": np.ones((2, 3), np.float32)}, handle)
    state = read_checkpoint(path)
    assert torch.equal(state["conv1.weight"], torch.ones(2, 3))
