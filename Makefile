# Quick start: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create the virtual environment in .venv when it is missing or older than pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test install system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	# the official once-for-all package, only as a test oracle; --no-deps: it wants torchvision
	$(PY) -m pip install -q --no-deps "ofa==0.1.0.post202307202001"
	touch $@

install: $(STAMP)

# Debian packages: the offline dataset, the aarch64 cross linker, cmake and g++ for the C++ runner
# (tests skip without them, saying why).
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  [ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	  command -v aarch64-linux-gnu-gcc >/dev/null || missing="$$missing gcc-aarch64-linux-gnu"; \
	  command -v cmake >/dev/null || missing="$$missing cmake"; \
	  command -v g++ >/dev/null || missing="$$missing g++"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "not root: skipping apt packages (dataset-fashion-mnist, gcc-aarch64-linux-gnu)"; fi

demo: $(STAMP) system-deps
	$(VENV)/bin/tvm-ofa demo

test: $(STAMP) system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build artifacts .pytest_cache
