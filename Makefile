# The two commands (README): `make run` and `make test`. `make install` is the idempotent install step.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# -n 2: the suite runs on both databases; two workers keep it well under the 15-minute budget.
PYTEST_ARGS ?= -n 2

.PHONY: install install-dev run test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c requirements.lock -e .
	touch $@

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -c requirements.lock -e '.[dev]'
	touch $@

run: install
	$(VENV)/bin/litemx serve

# with-test-services.sh provides PostgreSQL (the machine's, or a throwaway cluster) and the
# Debian tools the tests drive (postfix's smtp-source/smtp-sink, swaks, Mail::DKIM).
test: install-dev
	scripts/with-test-services.sh $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks (bench/README.md): prints figures and rewrites bench/RESULTS.md; never part of `make test`.
.PHONY: bench
# The same script as `make test` installs the peers' Debian tools (postfix, notmuch, wrk) first.
bench: install-dev
	LITEMX_BENCH_TOOLS=1 scripts/with-test-services.sh env BENCH_PYTHON=$(PY) bench/run
