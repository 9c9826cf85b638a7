"""Sphinx extension: serve MathJax and the ipywidgets loader from the book's own _static/vendor/.

`make assets` (book/vendor-src/install_assets.py) installs pinned copies from npm into
book/_static/vendor/ (git-ignored). At config time this extension points
- `mathjax_path` at vendor/mathjax/tex-chtml.js, and
- myst-nb's `nb_ipywidgets_js` (the scripts added to pages that hold widget state) at
  vendor/requirejs/require.js and vendor/html-manager/embed-amd.js,
so a built page loads nothing from outside its site. When the copies are missing it keeps the CDN
URLs of the same pinned versions and warns how to install the local ones.

The HTML manager loads widget modules it does not bundle from the URL prefix in the
`data-jupyter-widgets-cdn` attribute (default: jsDelivr). Only the core controls are used here and
they are bundled, so nothing is fetched; the attribute still points at a local folder, relative to
each page, so that a third-party widget fails locally rather than reach out to a CDN. Each page
with widgets also gets a `requirejs.config` mapping the bundled modules to the vendored folder,
where their font files are, and a shim that lets the manager typeset labels with MathJax 3.
"""

from __future__ import annotations

import json
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

# paths under _static/; install_assets.py creates them
MATHJAX = "vendor/mathjax/tex-chtml.js"
REQUIREJS = "vendor/requirejs/require.js"
EMBED_AMD = "vendor/html-manager/embed-amd.js"
WIDGET_MODULES = "vendor/widget-modules/"  # the local "CDN": empty, see the module docstring
CDN = "https://cdn.jsdelivr.net/npm/"
_MATHJAX2_HUB = (Path(__file__).parent / "mathjax2_hub.js").read_text()


def _pinned_versions(srcdir: Path) -> dict[str, str]:
    """The versions package.json pins, so the CDN fallback loads the same code as the local copy."""
    deps = json.loads((srcdir / "vendor-src" / "package.json").read_text())["dependencies"]
    return {name: deps[name] for name in ("mathjax", "requirejs", "@jupyter-widgets/html-manager")}


def _not_vendored(entry: str | tuple) -> bool:
    filename = entry[0] if isinstance(entry, (tuple, list)) else entry
    return not str(filename).startswith("vendor/")


def _configure(app: Sphinx, config: Config) -> None:
    # Jupyter Book adds every .js / .css file found under _static/ to every page; the vendored
    # files are loaded only where needed (MathJax by Sphinx, the widget scripts by myst-nb), and
    # MathJax loads its own components lazily.
    config.html_js_files = [e for e in config.html_js_files if _not_vendored(e)]
    config.html_css_files = [e for e in config.html_css_files if _not_vendored(e)]
    srcdir = Path(app.srcdir)
    static = srcdir / "_static"
    local = all((static / p).is_file() for p in (MATHJAX, REQUIREJS, EMBED_AMD))
    config.kdlib_local_assets = local
    if local:
        config.mathjax_path = MATHJAX
        config.nb_ipywidgets_js = {REQUIREJS: {}, EMBED_AMD: {"data-jupyter-widgets-cdn": WIDGET_MODULES}}
        return
    v = _pinned_versions(srcdir)
    config.mathjax_path = f"{CDN}mathjax@{v['mathjax']}/es5/tex-chtml.js"
    config.nb_ipywidgets_js = {
        f"{CDN}requirejs@{v['requirejs']}/require.js": {"crossorigin": "anonymous"},
        f"{CDN}@jupyter-widgets/html-manager@{v['@jupyter-widgets/html-manager']}/dist/embed-amd.js":
            {"data-jupyter-widgets-cdn": CDN, "crossorigin": "anonymous"},
    }
    logger.warning(
        "kdlib_assets: local MathJax / ipywidgets JavaScript not found under %s; the pages will "
        "load them from %s. Install the local copies with `make assets` (npm ci in "
        "book/vendor-src/, then copies into book/_static/vendor/).",
        static / "vendor", CDN, type="kdlib_assets", subtype="cdn")


def _widget_scripts_per_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Adjust the widget loader on pages that hold widgets (myst-nb added its scripts at 500).

    Before embed-amd.js: the MathJax 2 `Hub` shim (mathjax2_hub.js) and, with the local copies,
    a `requirejs.config` that maps the bundled AMD modules to the vendored folder (requirejs
    resolves names against the page, and webpack fetches their Font Awesome files from next to
    the module's URL); the widget-module "CDN" becomes a local folder relative to the page.
    """
    files = context.get("script_files") or []
    at = next((i for i, js in enumerate(files) if str(getattr(js, "filename", "") or "").endswith("embed-amd.js")), None)
    if at is None:
        return
    js = files[at]
    make = type(js)
    inserted = [make(None, priority=js.priority, body=_MATHJAX2_HUB)]
    if app.config.kdlib_local_assets:
        manager = context["pathto"]("_static/" + EMBED_AMD.rsplit("/", 1)[0], 1)
        paths = {f"@jupyter-widgets/{m}": f"{manager}/{m}"
                 for m in ("base", "controls", "output", "base7", "controls7", "html-manager")}
        paths["@jupyter-widgets/html-manager/dist"] = manager
        inserted.append(make(None, priority=js.priority,
                             body=f"window.requirejs && requirejs.config({{paths: {json.dumps(paths)}}});"))
        modules = context["pathto"]("_static/" + WIDGET_MODULES, 1)
        files[at] = make(js.filename, priority=js.priority,
                         **{**js.attributes, "data-jupyter-widgets-cdn": modules})
    files[at:at] = inserted


def _drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Keep one copy of each script tag.

    With Jupyter Book 1.x on Sphinx 7, the inline scripts that sphinx-thebe and sphinx-togglebutton
    add appear twice on every page (once with filename None, once ""), and the second
    `const THEBE_JS_URL` is a JavaScript error.
    """
    files = context.get("script_files")
    if files:
        seen, unique = set(), []
        for js in files:
            key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(js)
        files[:] = unique


def setup(app: Sphinx) -> dict:
    # set by _configure: whether the pages use the local copies ("env": a change re-reads all pages,
    # since myst-nb records each page's widget scripts when it reads the page)
    app.add_config_value("kdlib_local_assets", False, "env", [bool])
    # after jupyter-book / myst-nb set their defaults (priority 500), before the builder reads them
    app.connect("config-inited", _configure, priority=900)
    # after myst-nb adds a page's widget scripts (priority 500)
    app.connect("html-page-context", _widget_scripts_per_page, priority=900)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=950)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
