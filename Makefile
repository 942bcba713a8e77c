# sparkamp: `make demo` and `make test` build .venv/ (pinned, from requirements.txt) and the
# Debian data packages when they are missing or stale, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sparkamp-stamp
DEB_PACKAGES := dataset-fashion-mnist fortunes wordnet-base $(if $(filter test,$(MAKECMDGOALS)),chromium chromium-driver)
# pytest-xdist workers for `make test`: test modules run in parallel, a module stays on one worker
TEST_WORKERS ?= 2
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PYSPARK_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: venv data test demo dist bench docs clean

venv: $(STAMP)

# Rebuilt whenever the pins or the package metadata change.
$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

data:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian data packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

test: venv data
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

demo: venv data
	$(VENV)/bin/sparkamp demo

# The zip is written under a name of its own, then renamed (atomic): parallel test workers may build it at once.
dist:
	mkdir -p dist
	$(PYTHON) -c "import os, zipfile, pathlib; \
	tmp = f'dist/.sparkamp-{os.getpid()}.zip'; \
	z = zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED); \
	[z.write(p) for pkg in ('jobs', 'udfs', 'index') for p in sorted(pathlib.Path(pkg).rglob('*.py'))]; \
	z.write('sparkamp.py'); \
	z.close(); \
	os.replace(tmp, 'dist/sparkamp.zip')"
	@echo "wrote dist/sparkamp.zip"

bench: venv data
	$(PY) bench/embed.py --quick
	$(PY) bench/index.py --quick
	$(PY) bench/similarity.py --quick
	$(PY) bench/labels.py --quick
	$(PY) bench/scale.py --quick
	$(PY) bench/serve.py --quick

clean:
	rm -rf dist build *.egg-info warehouse spark-warehouse metastore_db derby.log

docs: venv
	$(PY) -m jobs.core.docs
