# The project's interface: `make run` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test
# Use PostgreSQL in tests too when the local server answers (CI machines run one).
PG_UP := $(shell $(PYTHON) -c "import socket; s=socket.socket(); s.settimeout(1); print('yes' if s.connect_ex(('127.0.0.1',5432))==0 else '')" 2>/dev/null)
export OVERTURE_TEST_POSTGRES_URL ?= $(if $(PG_UP),$(PG_URL),)
# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast lint typecheck bench clean install install-dev

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(BIN)/.installed

install: $(BIN)/.installed
install-dev: $(BIN)/.installed-dev

# Local trial: the server may post to receivers on this machine (`overture dev receiver`).
run: install
	OVERTURE_EGRESS_ALLOW=$${OVERTURE_EGRESS_ALLOW:-127.0.0.1/32,::1/128} \
	  $(BIN)/overture serve --first-run --host 127.0.0.1 --port 8000

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium

test: lint typecheck $(CHROMIUM)
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: install-dev
	$(BIN)/pytest -q -m "not slow" -x

bench: install-dev
	set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .overture .pytest_cache .mypy_cache .ruff_cache
