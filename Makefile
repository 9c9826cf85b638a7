# Set-up is part of every target: a fresh clone needs only `make test` or `make report`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make report` parameters: the scale (tiny, reduced, paper), the CIFAR-100 source, the device
# (auto, cpu, cuda) and the executor. DATA: $KDLIB_DATA if set, else the offline copy beside the
# project (../shared/data/cifar100-jpg.tar.gz) if there is one, else empty: torchvision's download.
SCALE ?= reduced
OFFLINE_COPY := ../shared/data/cifar100-jpg.tar.gz
DATA ?= $(or $(KDLIB_DATA),$(wildcard $(OFFLINE_COPY)))
DEVICE ?= auto
EXECUTOR ?= inline

.PHONY: setup setup-ray test test-deps assets report book clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/.installed

# Ray, for executor="ray": optional for using kdlib, always installed for the tests.
$(BIN)/.installed-ray: requirements-ray.txt $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-ray.txt
	touch $@

setup-ray: $(BIN)/.installed-ray

# The whole test suite (a few minutes on 2 CPU cores). Extra pytest flags: make test ARGS="-k cache"
# KDLIB_REQUIRE_RAY: the Ray tests fail rather than skip if Ray is missing.
test: setup setup-ray test-deps
	KDLIB_REQUIRE_RAY=1 $(BIN)/python -m pytest $(ARGS)

# The report's JavaScript (MathJax 3, RequireJS, the ipywidgets HTML manager), pinned by
# book/vendor-src/package-lock.json: `npm ci` there, then the files pages load are copied into
# book/_static/vendor/ (git-ignored). Needs Node.js and npm.
ASSETS := book/_static/vendor/versions.json
$(ASSETS): book/vendor-src/package.json book/vendor-src/package-lock.json book/vendor-src/install_assets.py
	$(PYTHON) book/vendor-src/install_assets.py

assets: $(ASSETS)

# The whole report: execute every notebook (python -m kdlib.report), then build the book.
# e.g. make report SCALE=tiny DATA=../shared/data/cifar100-jpg.tar.gz
report: setup assets
	$(BIN)/python -m kdlib.report --scale "$(SCALE)" --data "$(DATA)" --device "$(DEVICE)" --executor "$(EXECUTOR)"

# Rebuild the book from the executed notebooks already in book/executed/ (executes nothing).
book: setup
	$(BIN)/jupyter-book build book/

# What tests/test_browser.py needs beyond requirements.txt: Debian's chromium, and Node.js/npm for
# the local JavaScript. As root they are installed with apt-get; otherwise the browser test skips.
test-deps: setup
	@missing=""; \
	[ -x /usr/bin/chromium ] || [ -n "$$CHROMIUM" ] || missing="chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: apt-get install $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "test-deps: not installed: $$missing (not root, so not installing; the browser test will skip)"; \
	fi
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory assets; fi

clean:
	rm -rf $(VENV) .pytest_cache book/_build
