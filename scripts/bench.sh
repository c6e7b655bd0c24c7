#!/usr/bin/env bash
# Placeholder until the benchmark suite lands: says so and succeeds.
echo "make bench: the benchmark suite is not in this tree yet (see docs/benchmarks.md)"
