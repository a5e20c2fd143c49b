# dbprobe: `make test` sets the machine up (as root) and runs every test.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PYTEST := $(PYTHON) -m pytest -ra

.PHONY: setup test unit demo bench clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PYTEST) tests

unit:
	$(PYTEST) tests/unit

demo: setup
	$(VENV)/bin/dbprobe demo

bench: setup
	$(PYTHON) bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache build tests/.build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
