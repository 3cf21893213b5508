# recx developer commands. The venv is .venv inside this checkout (deploy/venv-path.sh);
# use another one with `make test VENV=/path/to/venv`.
VENV ?= $(shell deploy/venv-path.sh)
PYTEST_TIMEOUT ?= 900
PYTEST_ARGS ?=

.PHONY: setup test lint kafka-jars demo

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

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: setup
	$(VENV)/bin/python -m recx_worker.devtools.demo $(ARGS)
