"""Install the report's JavaScript from npm into book/_static/vendor/ (git-ignored).

The static report loads MathJax 3, RequireJS and the ipywidgets HTML manager from these local
copies, so a built page makes no request outside its own site. `make assets` runs this script:

1. `npm ci` in this folder installs the versions pinned by package.json / package-lock.json into
   ./node_modules (git-ignored; ~150 MB, because the HTML manager's package depends on JupyterLab
   sources it has already bundled);
2. only the files the pages load are copied into book/_static/vendor/ (about 10 MB).

book/_ext/kdlib_assets.py uses the copies when they are there, and the CDNs (with a build warning)
when they are not. Usage: python book/vendor-src/install_assets.py [--skip-npm]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
VENDOR = HERE.parent / "_static" / "vendor"

# destination folder under _static/vendor/ -> (package folder in node_modules, glob patterns)
FILES = {
    # tex-chtml.js finds its fonts and lazily loaded TeX/a11y/menu extensions relative to itself,
    # so those folders keep their layout; the other combined bundles and the SVG output are unused.
    "mathjax": ("mathjax/es5", ["tex-chtml.js", "output/chtml/**/*", "input/tex/**/*",
                                "a11y/**/*", "ui/**/*", "sre/**/*", "adaptors/**/*"]),
    "requirejs": ("requirejs", ["require.js"]),
    # embed-amd.js bundles the core widget models and views; its Font Awesome files are fetched
    # relative to the script (webpack public path = the module's folder).
    "html-manager": ("@jupyter-widgets/html-manager/dist",
                     ["embed-amd.js", "*.woff2", "*.woff", "*.ttf", "*.eot", "*.svg"]),
}


def npm_ci() -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("install_assets: `npm` not found. Install Node.js (e.g. `apt-get install nodejs npm`) "
                 "and run `make assets` again; without the local copies the book loads MathJax and "
                 "the widget manager from their CDNs.")
    subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=HERE, check=True)


def copy_files() -> int:
    """Copy FILES into VENDOR (replacing it); returns the number of files copied."""
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    count = 0
    for dest, (package, patterns) in FILES.items():
        src = NODE_MODULES / package
        if not src.is_dir():
            sys.exit(f"install_assets: {src} is missing; run without --skip-npm")
        for pattern in patterns:
            matches = [p for p in src.glob(pattern) if p.is_file()]
            if not matches:
                sys.exit(f"install_assets: nothing in {src} matches {pattern!r}")
            for path in matches:
                target = VENDOR / dest / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                count += 1
    versions = {name: json.loads((NODE_MODULES / name / "package.json").read_text())["version"]
                for name in ("mathjax", "requirejs", "@jupyter-widgets/html-manager")}
    (VENDOR / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-npm", action="store_true", help="only copy from an existing node_modules")
    args = parser.parse_args()
    if not args.skip_npm:
        npm_ci()
    count = copy_files()
    size = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    print(f"install_assets: {count} files ({size / 1e6:.1f} MB) in {VENDOR.relative_to(HERE.parents[1])}/")


if __name__ == "__main__":
    main()
