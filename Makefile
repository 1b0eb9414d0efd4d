# Entry points a newcomer types. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAKE   ?= demo-lake

.PHONY: demo test lint bench clean fixtures

$(STAMP): pyproject.toml hatch_build.py src/nightlake/detrends/detreg/_columns.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask,serve]'
	touch $(STAMP)

## make demo: build a lake from data/fixtures/ and run cross-night queries on it
demo: $(STAMP)
	$(BIN)/nightlake convert data/fixtures/collections --lake $(LAKE)
	@echo "== per night and target: images, median seeing FWHM (arcsec), median zero point"
	$(BIN)/nightlake sql --lake $(LAKE) --format table -f data/fixtures/demo_nightly.sql
	@echo "== per detector, across the survey"
	$(BIN)/nightlake stats --lake $(LAKE) --by detector --format table
	@echo "== the whole survey"
	$(BIN)/nightlake stats --lake $(LAKE) --by survey --format table --plot $(LAKE)-stats.png
	@echo "plot: $(LAKE)-stats.png"

## make test: lint, then run the whole test suite
test: lint
	$(BIN)/python -m pytest -q

## make lint: ruff's checks and its formatting, over everything we write
lint: $(STAMP)
	$(BIN)/ruff check src tests bench data/fixtures hatch_build.py
	$(BIN)/ruff format --check src tests bench data/fixtures hatch_build.py

## make bench: the speed goals (by hand; prints ratios against each baseline)
bench: $(STAMP)
	$(BIN)/python bench/convert.py
	$(BIN)/python bench/layout.py
	$(BIN)/python bench/query.py
	$(BIN)/python bench/detreg.py
	$(BIN)/python bench/resolve.py

## make fixtures: regenerate data/fixtures/ (deterministic)
fixtures: $(STAMP)
	$(BIN)/python data/fixtures/make_fixtures.py
	$(BIN)/python data/fixtures/detreg/make_detreg_fixtures.py

clean:
	rm -rf $(VENV) $(LAKE) $(LAKE)-stats.png .pytest_cache .hypothesis
