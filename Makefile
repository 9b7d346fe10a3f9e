# Wangge: `make serve` sets up everything and serves the sample town; `make test` runs the suite.
# Both work on a fresh Debian machine as root; with DATABASE_URL set they use that PostGIS instead.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup python python-test assets database system browser migrate sample serve check test fuzz clean-db

# Everything below is idempotent: once set up, `make serve` needs no network (apt, pip, npm).
setup: python assets database system

# The service's environment gets the runtime dependencies only; `make test` adds the test extras.
# Each has its own stamp, so neither reinstalls when nothing changed.
python: $(VENV)/.installed-runtime
$(VENV)/.installed-runtime: pyproject.toml scripts/ensure_python.sh
	bash scripts/ensure_python.sh $(VENV)
	touch $@

python-test: $(VENV)/.installed-test
$(VENV)/.installed-test: $(VENV)/.installed-runtime
	bash scripts/ensure_python.sh $(VENV) test
	touch $@

assets: maps/assets/node_modules/.installed
maps/assets/node_modules/.installed: maps/assets/package.json maps/assets/package-lock.json
	bash scripts/ensure_node.sh
	npm ci --prefix maps/assets --no-audit --no-fund --loglevel=error
	touch $@

database:
	bash scripts/ensure_postgis.sh

system:
	bash scripts/ensure_system_libs.sh

browser:
	bash scripts/ensure_chromium.sh

migrate: python database
	$(PY) -m gis.cli db upgrade

sample: migrate
	$(PY) -m gis.cli sample load --if-empty

serve: setup sample
	$(PY) -m gis.cli stats
	@# Demo accounts only for the synthetic sample; a town's own database (README "Start from nothing") gets none.
	$(PY) -m gis.cli sample demo-accounts || echo "not the sample town: no demo accounts (create accounts with wangge users)"
	WANGGE_HOST=$(HOST) WANGGE_PORT=$(PORT) $(PY) -m gis.cli serve

# The gates: lint, types and "the models and the migrations describe the same schema". Any finding fails.
check: python-test database
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m gis.cli db check

test: setup python-test browser check
	$(PY) -m pytest $(PYTEST_ARGS)

clean-db:
	-runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D var/pg stop -m fast
	rm -rf var/pg var/pg.port var/pg.password var/database_url
