# wssd: common tasks. `make test` is what CI runs (through .ci/run).
PREFIX ?= /usr/local
CARGO ?= cargo
# The daemon binary that install and deb use (one place to change if the
# binary package moves).
BIN ?= target/release/wssd

.PHONY: build release release-pgo test test-tools lint fmt bench autobahn install run units deb

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

## The release daemon optimised with a profile of its own hot paths
## (profile-guided: an instrumented build, a training run on loopback, the
## optimised build; about 7 minutes, needs `rustup component add
## llvm-tools`): target/pgo/release/wssd. `make bench` measures it;
## `make install BIN=target/pgo/release/wssd` installs it, `make deb
## BIN=target/pgo/release/wssd` packages it.
release-pgo:
	scripts/pgo-build.sh

## Run the daemon on the shipped example config (127.0.0.1:8080).
run: release
	./target/release/wssd --config config/wssd.toml

## Every test of the workspace (wssd, wssd-bench, wssd-cli): unit,
## integration (real daemon processes, Python websockets, tinyproxy,
## openssl), doc tests and example builds. The integration tests run
## target/debug/wssd, built here first (see tests/support/bin.rs). Also
## the bookkeeping of `make bench`'s runner (bench/scripts/test_bench.py).
test: test-tools
	$(CARGO) build --workspace --bins --examples
	$(CARGO) test --workspace
	$(WSSD_TEST_PYTHON) bench/scripts/test_bench.py

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
	for tool in redis-server haproxy systemd-socket-activate; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing\n  $$tool: apt-get install $$tool (systemd-socket-activate: apt-get install systemd)"; \
	done; \
	$(WSSD_TEST_PYTHON) -c 'import prometheus_client' >/dev/null 2>&1 || \
	  missing="$$missing\n  $(WSSD_TEST_PYTHON) with prometheus_client: python3 -m pip install prometheus_client"; \
	if [ -n "$$missing" ]; then \
	  printf "make test needs tools that are missing:$$missing\n(.ci/run installs all of them on a Debian machine; WSSD_TEST_PYTHON=/path/to/python picks another interpreter)\n" >&2; \
	  exit 1; \
	fi

## fmt --check, clippy with warnings as errors (the lints are the
## [lints] table of Cargo.toml and #![deny(missing_docs)] in src/lib.rs),
## and rustdoc with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --lib

fmt:
	$(CARGO) fmt --all

## systemd-analyze verify + security --offline=yes (exposure <= 2.0).
units: build
	scripts/systemd-check.sh

## RFC 6455 conformance: the Autobahn|Testsuite against the daemon and
## the client (docs/conformance.md). Part of CI.
autobahn:
	tests/autobahn/run.sh all

## Benchmarks (see docs/benchmarks.md; everything is in bench/).
bench: release
	bash bench/scripts/bench.sh

## Install the binary, the config (config/installed.toml, only if there
## is none yet), the systemd unit and the user wssd it runs as.
install: release
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/wssd
	install -D -m 0644 config/installed.toml $(DESTDIR)/etc/wssd/wssd.toml.example
	test -e $(DESTDIR)/etc/wssd/wssd.toml || install -D -m 0644 config/installed.toml $(DESTDIR)/etc/wssd/wssd.toml
	install -d $(DESTDIR)/etc/systemd/system
	sed -e 's|/usr/bin/wssd|$(PREFIX)/bin/wssd|g' -e 's|/usr/share/doc/wssd|$(PREFIX)/share/doc/wssd|g' \
		systemd/wssd.service >$(DESTDIR)/etc/systemd/system/wssd.service
	sed -e 's|/usr/share/doc/wssd|$(PREFIX)/share/doc/wssd|g' \
		systemd/wssd.socket >$(DESTDIR)/etc/systemd/system/wssd.socket
	install -D -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/wssd/operations.md
	install -D -m 0644 docs/configuration.md $(DESTDIR)$(PREFIX)/share/doc/wssd/configuration.md
	test -n "$(DESTDIR)" || id -u wssd >/dev/null 2>&1 || \
		useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wssd

## Debian package: target/debian/wssd_VERSION_ARCH.deb (scripts/deb.sh;
## needs dpkg-dev, fakeroot, help2man). `lintian` on it reports no error.
deb: release
	WSSD_BIN=$(BIN) scripts/deb.sh
