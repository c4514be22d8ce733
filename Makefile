# The two commands of the README. Both run the idempotent set-up first.
VENV ?= .venv
CONFIG ?= configs/local.yaml

.PHONY: serve test setup

setup:
	bash scripts/setup.sh

serve: setup
	$(VENV)/bin/python -m deployments.run_local $(CONFIG)

test: setup
	$(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)
