# recx developer commands. The venv is .venv inside this checkout (deploy/venv-path.sh);
# use another one with `make test VENV=/path/to/venv`.
VENV ?= $(shell deploy/venv-path.sh)
PYTEST_TIMEOUT ?= 900
PYTEST_ARGS ?=
# The fast lane: no Kafka broker, no real model (see the markers in pyproject.toml).
FAST_MARKERS ?= not kafka and not cluster and not model and not slow

.PHONY: setup test test-fast lint docs docs-serve kafka-jars demo

# Same steps as CI: venv (.venv), requirements, editable installs, Kafka jars.
setup:
	RECX_VENV=$(VENV) .ci/run --setup-only

# Broker jars from Maven Central into ~/.cache/recx/kafka/<version>/libs (once).
kafka-jars:
	$(VENV)/bin/python -c "from recx_worker.devtools.kafka_local import resolve_runtime as r; \
	  rt = r(); print(f'Kafka {rt.version} jars: {rt.libs}')"

# pytest exits 5 when it collects no tests: that fails too, with a message.
test: setup
	@$(VENV)/bin/pytest tests --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; fi; exit $$rc

# Unit tests only: no broker, no model download (seconds, not minutes).
test-fast:
	@$(VENV)/bin/pytest tests -q -m "$(FAST_MARKERS)" --timeout=120 $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; fi; exit $$rc

# ruff (style + McCabe complexity), formatting, mypy (strict on contracts, chain, worker).
lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site (mkdocs-material) into site/; fails on any broken link or page.
docs:
	$(VENV)/bin/python -m recx_worker.devtools.gen_docs --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve:
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

demo: setup
	$(VENV)/bin/python -m recx_worker.devtools.demo $(ARGS)
