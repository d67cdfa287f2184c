# The two commands: `make run` (the embedded control plane) and `make test` (the whole suite).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint openapi asl migration package bench-api clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml scripts/bootstrap
	scripts/bootstrap

run: $(STAMP)
	$(BIN)/aerie up

test: $(STAMP)
	scripts/test

lint: $(STAMP)
	$(BIN)/ruff check .

openapi: $(STAMP)
	$(BIN)/python -m chalicelib.api.registry --write openapi.json

asl: $(STAMP)
	$(BIN)/python -m chalicelib.flows.compile --write statemachines/ --infra infra/aerie.json

migration: $(STAMP)
	$(BIN)/python -m chalicelib.db.migrate revision "$(m)"

package: $(STAMP)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --merge-template infra/aerie.json build/package

bench-api: $(STAMP)
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) var .pytest_cache
