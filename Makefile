# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUST_SRC := $(shell find rust/src -name '*.rs' 2>/dev/null) rust/Cargo.toml rust/Cargo.lock
CONSOLE := web/dist/index.html
WEB_SRC := $(shell find web/src -type f 2>/dev/null) web/package.json web/package-lock.json \
	web/index.html web/vite.config.ts web/tsconfig.json

.PHONY: setup demo test test-py test-rust test-web lint lint-py bench bench-peers bench-crypten fuzz-sql fuzz clean

setup: $(STAMP) $(CONSOLE)

# The virtual environment holds every Python dependency and the native core,
# built in release mode by maturin (pip's PEP 517 build of this project).
$(STAMP): pyproject.toml $(RUST_SRC)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The web console: npm packages from the registry, built by Vite into web/dist (the node
# serves it at /). Debian's Chromium drives its browser test; where it cannot be installed
# (not root, no package source) that test is skipped and says why.
$(CONSOLE): $(WEB_SRC)
	cd web && npm ci --no-audit --no-fund && npm run build
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) \
		|| echo "chromium could not be installed: the console's browser test will be skipped"

demo: $(STAMP) $(CONSOLE)
	$(BIN)/python -m rainbridge.demo

test: $(STAMP) $(CONSOLE) lint-py test-rust test-web test-py

test-web: $(CONSOLE)
	cd web && npm test

lint-py: $(STAMP)
	$(BIN)/ruff check --no-cache python tests
	$(BIN)/mypy python/rainbridge

test-rust:
	cd rust && cargo test --release --locked -q

test-py: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check --no-cache python tests
	cd rust && cargo fmt --check && cargo clippy --release --locked --all-targets -- -D warnings

bench: $(STAMP)
	$(BIN)/python -m rainbridge.bench psi --n 1048576

# The SQL differential tester at length: generated data and queries, Rainbridge against
# DuckDB on the plaintext (a small run is part of make test)
fuzz-sql: $(STAMP)
	$(BIN)/python -m rainbridge.bench sqlfuzz --queries 10000 --progress

# The decoders of outside bytes (frames, hello, PIR, multi-lender, interconnection, job
# specs, the audit bundle) at length: mutated and random inputs, each decoded or refused
# with a typed error (a small run is part of make test, in tests/fuzz)
fuzz: $(STAMP)
	$(BIN)/python -m rainbridge.bench.fuzz --inputs 1000000

# Peer libraries for side-by-side figures live in their own environment:
# the product never imports them.
bench-peers: $(STAMP)
	bash scripts/bench-peers-env.sh

# CrypTen (with torch, several GiB) in its own environment too
bench-crypten: $(STAMP)
	bash scripts/bench-crypten-env.sh

clean:
	rm -rf $(VENV) rust/target web/node_modules web/dist
