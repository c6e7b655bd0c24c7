#!/usr/bin/env python3
"""Parses Prometheus text exposition (the file argv[1]) with prometheus_client's own
parser, the independent judge of wssd's /metrics; prints, as JSON, each
family's type and the sum of its samples (per sample name)."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    sums = {}
    for s in family.samples:
        sums[s.name] = sums.get(s.name, 0) + s.value
    out[family.name] = {"type": family.type, "sums": sums}
print(json.dumps(out))
