# Autobahn|Testsuite conformance targets (include from the top Makefile:
#   include tests/autobahn/autobahn.mk
# or copy these lines into it). See docs/conformance.md.

.PHONY: autobahn autobahn-server autobahn-client autobahn-setup autobahn-update

# Both modes, judged against tests/autobahn/expected-*.json.
autobahn:
	tests/autobahn/run.sh all

autobahn-server:
	tests/autobahn/run.sh server

autobahn-client:
	tests/autobahn/run.sh client

# Only create the wstest virtualenv (target/autobahn-venv).
autobahn-setup:
	tests/autobahn/run.sh setup

# After an improvement: rewrite the expected files from a fresh run.
autobahn-update:
	tests/autobahn/run.sh all --update
