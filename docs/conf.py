"""Sphinx configuration of the documentation site: the Markdown pages of docs/ (MyST) and the
Python reference generated from the docstrings of `django_inngest`.

Build: `python -m sphinx -W --keep-going -b html docs build/docs` (tests/docs runs it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Autodoc imports the package, whose models need a configured Django.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

project = "django-inngest-db"
author = "django-inngest contributors"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
html_theme = "alabaster"
html_title = "django-inngest-db"
# Examples with `...` placeholders are still shown, highlighted as far as they go.
suppress_warnings = ["misc.highlighting_failure"]
