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

.PHONY: setup demo dist image image-smoke test test-py test-pg test-rust test-web lint lint-py bench bench-peers bench-heu bench-crypten fuzz-sql fuzz fuzz-rust clean

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

test: $(STAMP) $(CONSOLE) $(DBSERVERS) dist lint-py test-rust test-web test-py test-pg

test-web: $(CONSOLE)
	cd web && npm test

lint-py: $(STAMP)
	$(BIN)/ruff check --no-cache python tests
	$(BIN)/mypy python/rainbridge

test-rust:
	cd rust && cargo test --release --locked -q

test-py: $(STAMP)
	$(BIN)/python -m pytest -q

# The node's tests and the federation's and governance's between node processes again,
# with every node's state in PostgreSQL: each node a fresh database on a throwaway cluster
# (tests/node_databases.py holds the switch). Every integration test in this mode:
# make test-pg PG_TESTS="tests/node tests/integration" (about 25 minutes on 2 loaded cores).
PG_TESTS ?= tests/node tests/integration/test_federation.py \
	tests/integration/test_governance.py tests/integration/test_federation_databases.py
test-pg: $(STAMP) $(DBSERVERS)
	RAINBRIDGE_TEST_DB=postgresql RAINBRIDGE_REQUIRE_DB_SERVERS=1 $(BIN)/python -m pytest -q \
		$(PG_TESTS)

# The wheel and the sdist in dist/: maturin, release (reusing rust/target, so cheap once the
# venv is built). The built console is copied into the package (rainbridge/console) for the
# build only, so an installed node serves it without Node.js, and a source tree never serves
# a stale copy. The wheel is tagged manylinux_2_34, not manylinux_2_28: the core as built
# here uses glibc symbols up to 2.34 (libc GLIBC_2.30/2.33/2.34, libm GLIBC_2.29), which
# maturin's auditwheel check refuses under 2_28 (that needs a build on an older glibc);
# 2_34 installs on glibc 2.34 and later (Debian 12, Ubuntu 22.04, RHEL 9).
PY_SRC := $(shell find python/rainbridge \( -name '*.py' -o -name '*.pyi' \) 2>/dev/null)
DIST_STAMP := dist/.built
dist: $(DIST_STAMP)

$(DIST_STAMP): $(STAMP) $(CONSOLE) $(PY_SRC) $(RUST_SRC) pyproject.toml README.md
	test -x $(BIN)/maturin || $(BIN)/python -m pip install -q 'maturin>=1.7,<2'
	rm -rf dist python/rainbridge/console
	cp -r web/dist python/rainbridge/console
	$(BIN)/maturin build --release --compatibility manylinux_2_34 -i $(BIN)/python --out dist \
		&& $(BIN)/maturin sdist -m rust/Cargo.toml --out dist; rc=$$?; rm -rf python/rainbridge/console; exit $$rc
	touch $@

# The OCI image (build/image/): a Debian bookworm root file system with the wheel in a venv,
# run as an unprivileged user; and a smoke test, two nodes from it and a PSI between them.
# Neither is part of make test: they need root and take minutes (deploy/image/*.sh say how).
image: dist
	bash deploy/image/build.sh

image-smoke: image
	bash deploy/image/smoke.sh

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

# SecretFlow's HEU, the HE benchmark's peer, in its own environment (.venv-heu)
bench-heu: $(STAMP)
	bash scripts/bench-heu-env.sh

# CrypTen (with torch, several GiB) in its own environment too
bench-crypten: $(STAMP)
	bash scripts/bench-crypten-env.sh

clean:
	rm -rf $(VENV) rust/target web/node_modules web/dist dist build
