# wssd: common tasks. `make test` is what CI runs (through .ci/run).
PREFIX ?= /usr/local
CARGO ?= cargo

.PHONY: build release test lint fmt bench autobahn install run

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

## Run the daemon on the shipped example config (127.0.0.1:8080).
run: release
	./target/release/wssd --config config/wssd.toml

## Every test of the workspace (wssd, wssd-bench, wssd-cli): unit,
## integration (real daemon processes, Python websockets, tinyproxy,
## openssl), doc tests and example builds. The integration tests run
## target/debug/wssd, built here first (see tests/common/wssd_bin.rs).
test:
	$(CARGO) build --workspace --bins --examples
	$(CARGO) test --workspace

## fmt --check and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## RFC 6455 conformance: the Autobahn|Testsuite against the daemon and
## the client (docs/conformance.md). Part of CI.
autobahn:
	tests/autobahn/run.sh all

## Benchmarks (see docs/benchmarks.md; everything is in bench/).
bench: release
	bash bench/scripts/bench.sh

## Install the binary, the example config and the systemd unit.
install: release
	install -D -m 0755 target/release/wssd $(DESTDIR)$(PREFIX)/bin/wssd
	install -D -m 0644 config/wssd.toml $(DESTDIR)/etc/wssd/wssd.toml.example
	test -e $(DESTDIR)/etc/wssd/wssd.toml || install -D -m 0644 config/wssd.toml $(DESTDIR)/etc/wssd/wssd.toml
	install -D -m 0644 systemd/wssd.service $(DESTDIR)/etc/systemd/system/wssd.service
	install -D -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/wssd/operations.md
