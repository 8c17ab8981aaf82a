"""Extraction defaults that the command line shows in ``--help``, in a module that imports nothing heavy."""

DEFAULT_MIN_IMAGE_SIZE = 16  # smaller images are unusable files (their reason goes to the report)
DEFAULT_SHARD_SIZE = 4096  # rows per shard, the unit of resuming
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
