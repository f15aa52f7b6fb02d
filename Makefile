# DeskPulse: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPINGS := typings/.installed

.PHONY: demo test lint typecheck pytest bench attack clean venv browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# ESP32 stubs live outside the venv's site-packages so that pyright uses them as the
# typeshed for firmware/ only (see firmware/pyrightconfig.json).
$(TYPINGS): $(STAMP)
	$(BIN)/pip install --quiet --upgrade --target typings 'micropython-esp32-stubs>=1.29,<1.30'
	touch $(TYPINGS)

demo: $(STAMP)
	$(BIN)/python -m deskpulse.demo

lint: $(STAMP)
	$(BIN)/ruff check firmware host tests tools

typecheck: $(TYPINGS)
	cd firmware && ../$(BIN)/pyright --project pyrightconfig.json

# The HTML report test draws the report in a real headless browser: Debian's chromium.
# Without apt-get (not Debian) nothing is installed and that test says it is skipped.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y chromium || \
			{ $$SUDO apt-get update && $$SUDO apt-get install -y chromium; }; \
	fi

pytest: $(TYPINGS) browser
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python tools/bench_log.py
	$(BIN)/python tools/bench_screens.py --rounds 30
	$(BIN)/python tools/bench_sync.py
	$(BIN)/python tools/bench_serve.py --seconds 10
	$(BIN)/python tools/bench_report.py

# Kills, lost ACKs and fuzz against the real programs, with an exact account
# (docs/reliability.md); several minutes, so not part of `make test`.
attack: $(STAMP)
	$(BIN)/python tools/attack.py

clean:
	rm -rf $(VENV) typings .pytest_cache
