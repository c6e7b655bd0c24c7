# wssd: common tasks. `make test` is what CI runs (through .ci/run).
PREFIX ?= /usr/local
CARGO ?= cargo

.PHONY: build release test test-tools lint fmt bench autobahn install run

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Run the daemon on the shipped example config (127.0.0.1:8080).
run: release
	./target/release/wssd --config config/wssd.toml

## Every test: unit, integration (real daemon processes, Python
## websockets, tinyproxy, openssl), doc tests and example builds.
test: test-tools
	$(CARGO) build --examples
	$(CARGO) test

## The independent peers the integration tests run besides Rust: checked
## first so that a missing one is named with what installs it (.ci/run
## installs them all on Debian). WSSD_TEST_PYTHON picks the interpreter.
WSSD_TEST_PYTHON ?= python3
export WSSD_TEST_PYTHON
test-tools:
	@missing=; \
	$(WSSD_TEST_PYTHON) -c 'import websockets.asyncio.server' >/dev/null 2>&1 || \
	  missing="$$missing\n  $(WSSD_TEST_PYTHON) with websockets >= 13: python3 -m pip install 'websockets>=13'"; \
	command -v tinyproxy >/dev/null 2>&1 || \
	  missing="$$missing\n  tinyproxy: apt-get install tinyproxy"; \
	command -v openssl >/dev/null 2>&1 || \
	  missing="$$missing\n  openssl: apt-get install openssl"; \
	if [ -n "$$missing" ]; then \
	  printf "make test needs tools that are missing:$$missing\n(.ci/run installs all of them on a Debian machine; WSSD_TEST_PYTHON=/path/to/python picks another interpreter)\n" >&2; \
	  exit 1; \
	fi

## fmt --check and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## RFC 6455 conformance: the Autobahn|Testsuite against the daemon and
## the client (docs/conformance.md). Part of CI.
autobahn:
	tests/autobahn/run.sh all

## Benchmarks (see docs/benchmarks.md).
bench: release
	bash scripts/bench.sh

## Install the binary, the example config and the systemd unit.
install: release
	install -D -m 0755 target/release/wssd $(DESTDIR)$(PREFIX)/bin/wssd
	install -D -m 0644 config/wssd.toml $(DESTDIR)/etc/wssd/wssd.toml.example
	test -e $(DESTDIR)/etc/wssd/wssd.toml || install -D -m 0644 config/wssd.toml $(DESTDIR)/etc/wssd/wssd.toml
	install -D -m 0644 systemd/wssd.service $(DESTDIR)/etc/systemd/system/wssd.service
	install -D -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/wssd/operations.md
