"""Where the package's data files lie once installed (wheel or checkout): the Space template that
``abaw_hf.hub.stage_space_repo`` copies and the Space's offline example media. A ground-floor module, so the
layers that stage (hub) and serve (space) the Space both read the locations from below."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

SPACE_TEMPLATE_DIR = _PACKAGE / "space_template"  # the Space repo's own files (app.py, README.md, requirements)
EXAMPLES_DIR = _PACKAGE / "space" / "examples"  # the offline example photo and clip (space/make_examples.py)
