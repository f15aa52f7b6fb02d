# DeskPulse: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPINGS := firmware/typings/.installed

.PHONY: demo test test-fast lint typecheck pytest bench attack clean venv browser terminal postgres

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sim]'
	touch $(STAMP)

# ESP32 stubs live in firmware/typings, the typeshed of firmware/ alone (see
# firmware/pyrightconfig.json): at the repository root pyright would use them for host/ too.
$(TYPINGS): $(STAMP)
	$(BIN)/pip install --quiet --upgrade --target firmware/typings 'micropython-esp32-stubs>=1.29,<1.30'
	touch $(TYPINGS)

demo: $(STAMP)
	$(BIN)/python -m deskpulse.sim.demo

lint: $(STAMP)
	$(BIN)/ruff check firmware host tests tools

# Two checks, each with its own typeshed: the host (pyproject.toml [tool.pyright], the
# venv's CPython packages) and firmware/ (the ESP32 stubs). Warnings fail too.
typecheck: $(TYPINGS)
	$(BIN)/pyright --warnings --project pyproject.toml
	cd firmware && ../$(BIN)/pyright --warnings --project pyrightconfig.json

# The HTML report test draws the report in a real headless browser: Debian's chromium.
# Without apt-get (not Debian) nothing is installed and that test says it is skipped.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y chromium || \
			{ $$SUDO apt-get update && $$SUDO apt-get install -y chromium; }; \
	fi

# `deskpulse sim --interactive` is tested in a real terminal: tmux. Same rule as the browser:
# without apt-get nothing is installed and those tests say they are skipped.
terminal:
	@if ! command -v tmux >/dev/null && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y tmux || \
			{ $$SUDO apt-get update && $$SUDO apt-get install -y tmux; }; \
	fi

# The store tests run on PostgreSQL too, on a throwaway cluster of Debian's postgresql 15
# (tests/pg_cluster.py). Same rule: without apt-get those tests say they are skipped.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y postgresql || \
			{ $$SUDO apt-get update && $$SUDO apt-get install -y postgresql; }; \
	fi

# Four workers on two cores: most tests wait on the simulator, ptys and servers, not the CPU.
PYTEST_WORKERS ?= 4
# xdist's default hands each worker about 100 tests in a row at first, and the slow tests
# come first (tests/conftest.py): one worker may hold many long runs while the others run
# out of work. Two at a time, each long test goes to whichever worker is free.
PYTEST_CHUNK ?= 2

pytest: $(TYPINGS) browser terminal postgres
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --maxschedchunk=$(PYTEST_CHUNK) --durations=20

# The quick loop while editing: every test but those marked slow (simulator runs, ptys, the
# browser; see the marker in pyproject.toml). `make test` still runs them all.
test-fast: $(TYPINGS)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) -m "not slow"

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python tools/bench_log.py
	$(BIN)/python tools/bench_screens.py --rounds 30
	$(BIN)/python tools/bench_sync.py
	$(BIN)/python tools/bench_serve.py --seconds 10
	$(BIN)/python tools/bench_serve.py --seconds 10 --db postgresql
	$(BIN)/python tools/bench_serve.py --seconds 10 --db postgresql --instances 2
	$(BIN)/python tools/bench_copy.py
	$(BIN)/python tools/bench_report.py
	$(BIN)/python tools/bench_ingest.py
	$(BIN)/python tools/bench_sim.py
	$(BIN)/python tools/bench_time.py
	$(BIN)/python tools/bench_font.py
	$(BIN)/python tools/bench_heap.py
	$(BIN)/python tools/bench_install.py
	$(BIN)/python tools/bench_sites.py

# Kills, lost ACKs and fuzz against the real programs, with an exact account
# (docs/reliability.md); several minutes, so not part of `make test`.
attack: $(STAMP)
	$(BIN)/python tools/attack.py

clean:
	rm -rf $(VENV) firmware/typings .pytest_cache
