# Entry points a newcomer types. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAKE   ?= demo-lake

.PHONY: demo test bench clean fixtures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## make demo: build a lake from data/fixtures/ and run cross-night queries on it
demo: $(STAMP)
	$(BIN)/nightlake convert data/fixtures/collections --lake $(LAKE)
	$(BIN)/nightlake sql --lake $(LAKE) --format table -- "$$(cat data/fixtures/demo_nightly.sql)"

## make test: run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## make bench: the speed goals (by hand; prints ratios against each baseline)
bench: $(STAMP)
	$(BIN)/python bench/convert.py
	$(BIN)/python bench/detreg.py

## make fixtures: regenerate data/fixtures/ (deterministic)
fixtures: $(STAMP)
	$(BIN)/python data/fixtures/make_fixtures.py
	$(BIN)/python data/fixtures/detreg/make_detreg_fixtures.py

clean:
	rm -rf $(VENV) $(LAKE) .pytest_cache .hypothesis
