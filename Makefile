# samrs: the two commands of the README.
#   make demo   set up .venv (once) and train the demo experiment on generated scenes, CPU
#   make test   set up .venv (once) and run the test suite (what CI runs, via .ci/run)
# A second run skips the install: the stamp file is newer than pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
# The torch build to install; override for another CUDA, e.g. TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.samrs-installed
# Two test processes of one thread each: more threads than cores slow small torch steps 10x.
PYTEST_ARGS ?= -n 2

.PHONY: install demo test clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(PY) -m samrs.train experiment=demo $(ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_ARGS) $(ARGS)

clean-venv:
	rm -rf $(VENV)
