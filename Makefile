# The two entry points of the README: `make lab` (main job) and `make test` (all tests).
.PHONY: deps build test lab lint

deps:
	./scripts/install-deps.sh

build:
	cargo build --release

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# All tests: unit, fixture-driven and integration (network-namespace SSH hosts, ansible differential).
test: deps lint
	cargo test --workspace --all-targets -- --test-threads=2

lab: deps build
	./scripts/local-lab.sh
