# The README's two commands: `make demo` and `make test`. Each sets up .venv/ itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test setup clean weights

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[cpu,test]"
	# The TIN custom op (C++; cached per TF version). A failed build only warns: the
	# layer then uses the portable path, and the op also builds lazily on first use.
	$(PY) -m keras_tin.ops.custom_op
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/keras-tin demo

test: $(STAMP)
	$(PY) -m pytest -q tests

# Converted-weights release (weights/release.py): NAME=<record> [NAME=...], or all records.
weights: $(STAMP)
	$(PY) weights/release.py $(if $(NAME),$(NAME),--all) $(RELEASE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
