"""Face-side constants the command line reads for ``--help`` (plain Python: no numpy, cv2 or mediapipe)."""

BACKENDS = ("mtcnn", "mediapipe", "haar")  # face detectors (`abaw_hf.faces.FaceDetector`)
DEFAULT_BACKEND = "mtcnn"  # finds every face in the wild (README: detector comparison)
FACE_SIZE = 112  # px of an aligned crop: ABAW's cropped_aligned frames; extractors resize to their own input size
MAX_FACES = 16  # faces tracked per frame (the pipeline reports some of them, chosen by its ``faces``)
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's decompression-bomb limit: larger images are refused, not decoded
