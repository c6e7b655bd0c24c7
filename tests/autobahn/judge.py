"""Judges an Autobahn|Testsuite run from its JSON reports.

    judge.py MODE REPORT_DIR AGENT EXPECTED_JSON [--update]

Reads REPORT_DIR/index.json (what wstest writes at the very end of a run),
takes AGENT's results and compares them case by case with EXPECTED_JSON
(tests/autobahn/expected-server.json or expected-client.json). Exits 1 when:

- the report is missing, or holds no result for AGENT (wstest exits 0 even
  when it never reached the peer);
- a case of EXPECTED_JSON is missing from the report (wstest silently skips
  the remaining cases when the peer dies mid-run), or the report has a case
  that EXPECTED_JSON does not know;
- any case's `behavior` or `behaviorClose` is FAILED (or another failing
  result: WRONG CODE, UNCLEAN, ...);
- any result is worse than the expected one. OK is better than NON-STRICT,
  which is better than INFORMATIONAL, which is better than UNIMPLEMENTED.
  An expected value may be a list of accepted results (the 6.4.x fail-fast
  cases are timing-dependent and flip between OK and NON-STRICT); then the
  worst of the list is the bar.

With --update, EXPECTED_JSON is (re)written from the report instead (still
failing on FAILED cases), for a maintainer who improved the results.

Prints a table of result counts per case family (the first number of the
case id) for docs/conformance.md.

Runs on Python 2.7 (the suite's own interpreter) and Python 3.
"""

from __future__ import print_function

import json
import os
import sys
from collections import OrderedDict

# Results that are acceptable, best first.
RANK = OrderedDict(
    [("OK", 0), ("NON-STRICT", 1), ("INFORMATIONAL", 2), ("UNIMPLEMENTED", 3)]
)
COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "other"]


def case_key(case_id):
    """Sorts "9.10.2" after "9.2.1"."""
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def rank(result):
    """Acceptable results by rank; anything else (FAILED, WRONG CODE,
    UNCLEAN, ...) ranks below all of them."""
    return RANK.get(result, 99)


def bar(expected):
    """The worst acceptable result for an expected value (a string or a
    list of strings)."""
    if isinstance(expected, list):
        return max(expected, key=rank)
    return expected


def best(expected):
    """The best result an expected value names."""
    if isinstance(expected, list):
        return min(expected, key=rank)
    return expected


def show(expected):
    """An expected value for messages: "OK" or "OK|NON-STRICT"."""
    if isinstance(expected, list):
        return "|".join(str(e) for e in expected)
    return str(expected)


def load_report(report_dir, agent):
    index_path = os.path.join(report_dir, "index.json")
    if not os.path.exists(index_path):
        sys.exit("autobahn: no report at %s: wstest did not finish" % index_path)
    with open(index_path) as f:
        index = json.load(f)
    if agent not in index or not index[agent]:
        sys.exit(
            "autobahn: %s has no results for agent %r (agents: %s): "
            "wstest never reached the peer" % (index_path, agent, sorted(index))
        )
    return index[agent]


def family_table(mode, results):
    """Markdown table: result counts per case family."""
    families = OrderedDict()
    for case_id in sorted(results, key=case_key):
        fam = int(case_id.split(".")[0])
        counts = families.setdefault(fam, OrderedDict((c, 0) for c in COLUMNS))
        behavior = results[case_id]["behavior"]
        counts[behavior if behavior in counts else "other"] += 1
    lines = [
        "| %s: case family | cases | %s |" % (mode, " | ".join(COLUMNS)),
        "| --- | ---: | %s |" % " | ".join("---:" for _ in COLUMNS),
    ]
    totals = OrderedDict((c, 0) for c in COLUMNS)
    for fam, counts in families.items():
        for c in COLUMNS:
            totals[c] += counts[c]
        lines.append(
            "| %d | %d | %s |"
            % (fam, sum(counts.values()), " | ".join(str(counts[c]) for c in COLUMNS))
        )
    lines.append(
        "| **all** | **%d** | %s |"
        % (sum(totals.values()), " | ".join("**%d**" % totals[c] for c in COLUMNS))
    )
    return "\n".join(lines)


def main(argv):
    update = "--update" in argv
    args = [a for a in argv if a != "--update"]
    if len(args) != 4:
        sys.exit(__doc__)
    mode, report_dir, agent, expected_path = args
    report = load_report(report_dir, agent)
    results = OrderedDict()
    for case_id in sorted(report, key=case_key):
        r = report[case_id]
        results[case_id] = {
            "behavior": r.get("behavior", "MISSING"),
            "behaviorClose": r.get("behaviorClose", "MISSING"),
        }

    problems = []
    for case_id, r in results.items():
        for field in ("behavior", "behaviorClose"):
            if rank(r[field]) == 99:
                problems.append(
                    "case %s: %s is %s (see %s)"
                    % (case_id, field, r[field], report[case_id].get("reportfile", "?"))
                )

    if update:
        expected = OrderedDict()
        if os.path.exists(expected_path):
            with open(expected_path) as f:
                expected = json.load(f, object_pairs_hook=OrderedDict)
        new = OrderedDict()
        for case_id, r in results.items():
            old = expected.get(case_id, {})
            entry = OrderedDict()
            for field in ("behavior", "behaviorClose"):
                # Keep a list of accepted results if the new one is in it.
                if isinstance(old.get(field), list) and r[field] in old[field]:
                    entry[field] = old[field]
                else:
                    entry[field] = r[field]
            new[case_id] = entry
        with open(expected_path, "w") as f:
            # One case per line: reviewable diffs.
            lines = ['  "%s": %s' % (c, json.dumps(e)) for c, e in new.items()]
            f.write("{\n" + ",\n".join(lines) + "\n}\n")
        print("autobahn %s: wrote %s (%d cases)" % (mode, expected_path, len(new)))
    else:
        if not os.path.exists(expected_path):
            sys.exit("autobahn: no expected results at %s" % expected_path)
        with open(expected_path) as f:
            expected = json.load(f, object_pairs_hook=OrderedDict)
        missing = [c for c in expected if c not in results]
        if missing:
            problems.append(
                "%d of %d expected cases missing from the report (first: %s): "
                "the peer died or hung mid-run"
                % (len(missing), len(expected), ", ".join(missing[:5]))
            )
        for case_id, r in results.items():
            if case_id not in expected:
                problems.append("case %s is not in %s" % (case_id, expected_path))
                continue
            for field in ("behavior", "behaviorClose"):
                want = expected[case_id][field]
                if rank(r[field]) > rank(bar(want)):
                    problems.append(
                        "case %s: %s is %s, expected %s (regression; see %s)"
                        % (
                            case_id,
                            field,
                            r[field],
                            show(want),
                            report[case_id].get("reportfile", "?"),
                        )
                    )
                elif rank(r[field]) < rank(best(want)):
                    print(
                        "autobahn %s: case %s: %s improved to %s (expected %s); "
                        "consider updating %s" % (mode, case_id, field, r[field], show(want), expected_path)
                    )

    print(family_table(mode, results))
    notable = [
        "%s %s" % (c, r["behavior"]) for c, r in results.items() if r["behavior"] != "OK"
    ]
    if notable:
        print("autobahn %s: not OK: %s" % (mode, ", ".join(notable)))
    if problems:
        for p in problems:
            print("autobahn %s: FAIL: %s" % (mode, p), file=sys.stderr)
        print(
            "autobahn %s: %d cases judged, %d problems" % (mode, len(results), len(problems)),
            file=sys.stderr,
        )
        return 1
    print("autobahn %s: %d cases judged, all as expected or better" % (mode, len(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
