"""``fau``: OpenFace 2.0's 17 action-unit intensities (``AUxx_r``, 0..5) per face.

Three ways to get them, all giving ``AUFrames`` (features ``[N, 17]`` + a ``present`` mask):

- ``read_openface_csv(path)``: the CSV that OpenFace's ``FeatureExtraction`` wrote
  (rows with ``success == 0`` are missing vectors; the one reader, `abaw_hf.openface`);
- ``run_openface(video_or_folder)`` or ``create_extractor("fau", variant="openface")``: runs
  ``FeatureExtraction`` (found on PATH) and reads its CSV;
- ``create_extractor("fau")`` (variant ``"mediapipe"``, the default): in process and offline, from
  MediaPipe FaceLandmarker's 52 blendshapes (ARKit-style, 0..1), mapped to the 17 AUs by
  ``BLENDSHAPES_FOR_AU`` and scaled by 5. This is an approximation of the same facial actions,
  not OpenFace's SVR output: a researcher reproducing the paper uses OpenFace's CSVs.

Missing vectors (no face found) are zeros in ``extract`` and ``False`` in
``extract_with_mask``'s mask; they are never NaN.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ..openface import (AU_INTENSITY_MAX, OPENFACE_AU_NAMES, OPENFACE_INTENSITY_COLUMNS,  # noqa: F401
                             AUFrames, OpenFaceError, read_openface_csv)
from .base import Extractor, PreprocessConfig
from .registry import register_extractor


# Which MediaPipe blendshapes measure each AU (their mean, x5). Left/right pairs are the two
# halves of the face. "approximate" marks AUs whose blendshape is a related, not the same, action.
BLENDSHAPES_FOR_AU: dict[str, tuple[tuple[str, ...], str]] = {
    "AU01": (("browInnerUp",), "inner brow raiser"),
    "AU02": (("browOuterUpLeft", "browOuterUpRight"), "outer brow raiser"),
    "AU04": (("browDownLeft", "browDownRight"), "brow lowerer"),
    "AU05": (("eyeWideLeft", "eyeWideRight"), "upper lid raiser"),
    "AU06": (("cheekSquintLeft", "cheekSquintRight"), "cheek raiser"),
    "AU07": (("eyeSquintLeft", "eyeSquintRight"), "lid tightener"),
    "AU09": (("noseSneerLeft", "noseSneerRight"), "nose wrinkler"),
    "AU10": (("mouthUpperUpLeft", "mouthUpperUpRight"), "upper lip raiser"),
    "AU12": (("mouthSmileLeft", "mouthSmileRight"), "lip corner puller"),
    "AU14": (("mouthDimpleLeft", "mouthDimpleRight"), "dimpler"),
    "AU15": (("mouthFrownLeft", "mouthFrownRight"), "lip corner depressor"),
    "AU17": (("mouthShrugLower",), "chin raiser"),
    "AU20": (("mouthStretchLeft", "mouthStretchRight"), "lip stretcher"),
    "AU23": (("mouthPressLeft", "mouthPressRight"), "lip tightener (approximate: blendshape is lip press, AU24)"),
    "AU25": (("mouthLowerDownLeft", "mouthLowerDownRight"), "lips part (approximate: lower lip depressor, AU16)"),
    "AU26": (("jawOpen",), "jaw drop"),
    "AU45": (("eyeBlinkLeft", "eyeBlinkRight"), "blink"),
}


def blendshapes_to_aus(blendshapes: dict[str, float]) -> np.ndarray:
    """The 17 OpenFace AU intensities (0..5) estimated from one face's MediaPipe blendshapes."""
    values = np.empty(len(OPENFACE_AU_NAMES), dtype=np.float32)
    for index, name in enumerate(OPENFACE_AU_NAMES):
        sources, _ = BLENDSHAPES_FOR_AU[name]
        try:
            score = sum(blendshapes[source] for source in sources) / len(sources)
        except KeyError as error:
            raise ValueError(f"blendshape {error.args[0]!r} (for {name}) is missing from the landmarker output") from None
        values[index] = AU_INTENSITY_MAX * min(1.0, max(0.0, score))
    return values


# -- running OpenFace ----------------------------------------------------------------------------
def find_openface(executable: str | os.PathLike | None = None) -> str | None:
    """Path of OpenFace's ``FeatureExtraction`` (``executable``, ``$OPENFACE_FEATURE_EXTRACTION`` or PATH)."""
    candidate = executable or os.environ.get("OPENFACE_FEATURE_EXTRACTION") or "FeatureExtraction"
    return shutil.which(str(candidate))


def run_openface(
    source: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    executable: str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
) -> AUFrames:
    """Run ``FeatureExtraction`` on a video file or a folder of frames and read its AU intensities.

    A folder is processed as one sequence in sorted file-name order (OpenFace's frame ``i`` is the
    ``i``-th file). The CSV is written to ``output_dir`` (a temporary folder when None).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such video or frames folder")
    program = find_openface(executable)
    if program is None:
        raise OpenFaceError(
            f"OpenFace's FeatureExtraction was not found ({executable or 'FeatureExtraction'} on PATH, or "
            "$OPENFACE_FEATURE_EXTRACTION); install OpenFace 2.x or use the 'mediapipe' variant"
        )
    with tempfile.TemporaryDirectory(prefix="abaw_openface_") as scratch:
        out_dir = Path(output_dir) if output_dir is not None else Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = source.stem if source.is_file() else source.name
        input_args = ["-f", str(source)] if source.is_file() else ["-fdir", str(source)]
        command = [program, *input_args, "-out_dir", str(out_dir), "-of", name, "-aus", "-q", *extra_args]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise OpenFaceError(f"{source}: running {' '.join(command)} failed: {error}") from error
        csv_path = out_dir / f"{name}.csv"
        if completed.returncode != 0 or not csv_path.is_file():
            detail = (completed.stderr or completed.stdout).strip()[-800:]
            raise OpenFaceError(
                f"{source}: FeatureExtraction exited with {completed.returncode} and "
                f"{'wrote' if csv_path.is_file() else 'no'} {csv_path.name}: {detail}"
            )
        result = read_openface_csv(csv_path)
    result.provenance = {"backend": "openface", "program": Path(program).name, "source": source.name}
    return result


# -- the registered extractor --------------------------------------------------------------------
@register_extractor("fau")
class FauExtractor(Extractor):
    """17 OpenFace AU intensities per face crop (variants ``mediapipe`` and ``openface``)."""

    dim = len(OPENFACE_AU_NAMES)
    # Images reach forward() as 0..1 floats (mean 0, std 1) and go back to uint8 for the backends.
    preprocess_cfg = PreprocessConfig(input_size=112, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    layouts = {"mediapipe": "mediapipe_face_landmarker_blendshapes", "openface": "openface2_feature_extraction"}
    needs_checkpoint = False
    may_miss_faces = True  # its own face detector runs in each crop

    def __init__(
        self,
        variant: str | None = None,
        executable: str | os.PathLike | None = None,
        min_confidence: float = 0.5,
        pad_fraction: float = 0.25,
    ) -> None:
        super().__init__(variant)
        self.executable = executable
        self.min_confidence = min_confidence
        # Tight aligned crops are padded with black so that the face detector sees a whole face.
        self.pad_fraction = pad_fraction
        self._detector = None
        if self.variant == "openface" and find_openface(executable) is None:
            raise OpenFaceError(
                "the 'openface' fau variant needs OpenFace's FeatureExtraction on PATH (or "
                "$OPENFACE_FEATURE_EXTRACTION); the offline 'mediapipe' variant needs nothing"
            )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_detector"] = None  # a MediaPipe graph does not pickle; rebuilt on first use
        return state

    # -- backends --------------------------------------------------------------------------------
    def _face_detector(self):
        if self._detector is None:
            from ..faces import FaceDetector

            self._detector = FaceDetector("mediapipe", max_faces=1, min_confidence=self.min_confidence)
        return self._detector

    def _mediapipe_aus(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        detector = self._face_detector()
        features = np.zeros((len(images), self.dim), dtype=np.float32)
        present = np.zeros(len(images), dtype=bool)
        for index, image in enumerate(images):
            pad = int(round(self.pad_fraction * max(image.shape[:2])))
            if pad:
                image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            faces = detector.detect(image)
            if faces and faces[0].blendshapes:
                features[index] = blendshapes_to_aus(faces[0].blendshapes)
                present[index] = True
        return features, present

    def _openface_aus(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="abaw_fau_") as scratch:
            frames_dir = Path(scratch) / "frames"
            frames_dir.mkdir()
            for index, image in enumerate(images):
                cv2.imwrite(str(frames_dir / f"{index + 1:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            result = run_openface(frames_dir, output_dir=Path(scratch) / "out", executable=self.executable)
        features = np.zeros((len(images), self.dim), dtype=np.float32)
        present = np.zeros(len(images), dtype=bool)
        positions = result.frames - 1
        if (positions < 0).any() or (positions >= len(images)).any():
            raise OpenFaceError(f"FeatureExtraction reported frames {result.frames.tolist()} for {len(images)} images")
        features[positions] = result.features
        present[positions] = result.present
        return features, present

    # -- extraction ------------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed 0..1 images ``[N, 3, 112, 112]`` -> AU intensities ``[N, 17]`` (zeros where no face)."""
        return self._run(pixel_values)[0]

    def _run(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = (pixel_values.detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8)
        images = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())
        backend = self._mediapipe_aus if self.variant == "mediapipe" else self._openface_aus
        features, present = backend(images)
        return torch.from_numpy(features), torch.from_numpy(present)

    def extract_with_mask(self, images, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [N, 17] float32, present [N] bool)``; missing rows are zeros with ``present`` False."""
        pixel_values = self.preprocess(images)
        results = [self._run(pixel_values[start : start + batch_size]) for start in range(0, len(pixel_values), batch_size)]
        return torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results])

    def extract(self, images, batch_size: int = 32) -> torch.Tensor:
        """AU intensities ``[N, 17]`` (zeros where no face was found; see ``extract_with_mask``)."""
        return self.extract_with_mask(images, batch_size)[0]

    def load_checkpoint(self, path, *, strict: bool = True, allow_pickle: bool = False):
        """``fau`` has no weights of its own: its models ship with MediaPipe / OpenFace."""
        raise ValueError(f"{path}: the 'fau' extractor takes no checkpoint (its models ship with MediaPipe / OpenFace)")

    def provenance(self) -> dict:
        record = super().provenance()
        record["au_names"] = list(OPENFACE_AU_NAMES)
        if self.variant == "mediapipe":
            from ..faces import bundled_landmarker_path
            from .checkpoints import file_sha256

            model = bundled_landmarker_path()
            record.update(backend="mediapipe_blendshapes", checkpoint=model.name, sha256=file_sha256(model))
        else:
            record.update(backend="openface", program=Path(find_openface(self.executable) or "FeatureExtraction").name)
        return record

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None
