"""The Gradio Space, shipped in the wheel so that ``abaw-hf push --space-id`` works from an installed package:

- ``app``: the request handlers (``AffectSpace``), the Blocks page (``build_app``), ``launch`` and ``main``
- ``views``: what the page shows (figures, the frame with its face boxes, the header), testable without a server
- the files of the Space repo itself (the thin ``app.py`` a Space runs, ``README.md`` with the Space's YAML header,
  ``requirements.txt``) are package data in ``abaw_hf/space_template/``, beside this package: that ``app.py`` calls
  the command line (``abaw_hf.cli.space``), so it is not part of the package the command line imports
- ``examples/``: the offline example photo and clip (written by ``space/make_examples.py``)

Importing this package is light (no gradio); ``abaw_hf.space.app`` imports gradio and torch.
"""

from ..package_data import EXAMPLES_DIR, SPACE_TEMPLATE_DIR  # noqa: F401  where the template and examples lie
