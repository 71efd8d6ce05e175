# Two commands a newcomer needs: `make demo` and `make test`. Each creates its own venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8765

.PHONY: demo test lint bench pictures clean

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

## demo: a sample run in the terminal, then the demo API and JupyterLab on the quickstart
demo: $(VENV)/.installed-test
	$(PY) -m apiorch_nb.demo.lab --port $(PORT) $(LAB_ARGS)

## test: lint, then the whole test suite against real local servers, then the notebooks (nbval)
test: $(VENV)/.installed-test
	$(PY) -m ruff check apiorch_nb tests bench docs
	$(PY) -m pytest
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

lint: $(VENV)/.installed-test
	$(PY) -m ruff check apiorch_nb tests bench docs
	$(PY) -m ruff format --check apiorch_nb tests bench docs

## bench: apiorch_nb side by side with plain aiohttp and dataknobs-fsm (medians)
bench: $(VENV)/.installed-bench
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) bench/run.py

## pictures: regenerate the README's docs/waterfall.png and docs/graph.png (kaleido renders
## through the installed chromium, BROWSER_PATH or /usr/bin/chromium; it never downloads one)
pictures: $(VENV)/.installed-docs
	$(PY) docs/make_pictures.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
