# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUST_SRC := $(shell find rust/src -name '*.rs' 2>/dev/null) rust/Cargo.toml rust/Cargo.lock
CONSOLE := web/dist/index.html
DBSERVERS := build/.dbservers
WEB_SRC := $(shell find web/src -type f 2>/dev/null) web/package.json web/package-lock.json \
	web/index.html web/vite.config.ts web/tsconfig.json

.PHONY: setup demo test test-py test-rust test-web lint lint-py bench bench-peers bench-crypten fuzz-sql fuzz fuzz-rust clean

setup: $(STAMP) $(CONSOLE) $(DBSERVERS)

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

# The database servers the tests start throwaway instances of (PostgreSQL for the node's
# state and as a data source, MariaDB as a data source): Debian's packages, installed once.
# Where they cannot be installed (not root, no package source) the tests that need them
# are skipped and say why.
$(DBSERVERS):
	@mkdir -p build
	@(ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1) \
		|| DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql mariadb-server >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			postgresql mariadb-server >/dev/null 2>&1) \
		|| echo "PostgreSQL/MariaDB could not be installed: the tests that need them will be skipped"
	@touch $@

demo: $(STAMP) $(CONSOLE)
	$(BIN)/python -m rainbridge.demo

test: $(STAMP) $(CONSOLE) $(DBSERVERS) lint-py test-rust test-web test-py

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

# The decoders of outside bytes at length, each input decoded or refused with a typed error
# (small runs are part of make test: tests/fuzz and rust/tests/fuzz_decoders.rs). Python
# (frames and hello, PIR, multi-lender, interconnection, job specs, the audit bundle, peers'
# control requests, REST bodies, CSV and Parquet files): FUZZ_INPUTS mutated and random
# inputs per decoder, then ATHERIS_INPUTS coverage-guided ones with atheris, installed into
# the venv here and never a dependency of the product (the mutational engine runs instead
# where it does not install; the corpus and any crash are kept in build/fuzz-corpus). Then
# the core's decoders (fuzz-rust): FUZZ_CASES proptest cases each.
FUZZ_INPUTS ?= 1000000
ATHERIS_INPUTS ?= 100000
FUZZ_CASES ?= 10000000
fuzz: $(STAMP)
	$(BIN)/python -m rainbridge.bench.fuzz --inputs $(FUZZ_INPUTS)
	$(BIN)/python -c 'import atheris' 2>/dev/null || $(BIN)/python -m pip install -q atheris || true
	$(BIN)/python -m rainbridge.bench.fuzz --engine atheris --inputs $(ATHERIS_INPUTS) \
		--corpus build/fuzz-corpus
	$(MAKE) fuzz-rust

fuzz-rust:
	cd rust && RAINBRIDGE_FUZZ_CASES=$(FUZZ_CASES) cargo test --release --locked -q \
		--test fuzz_decoders -- --nocapture

# Peer libraries for side-by-side figures live in their own environment:
# the product never imports them.
bench-peers: $(STAMP)
	bash scripts/bench-peers-env.sh

# CrypTen (with torch, several GiB) in its own environment too
bench-crypten: $(STAMP)
	bash scripts/bench-crypten-env.sh

clean:
	rm -rf $(VENV) rust/target web/node_modules web/dist
