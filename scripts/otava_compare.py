#!/usr/bin/env python3
"""Change points by Apache Otava, for comparison with perfsync's own detector.

Reads JSON on stdin:
    {"series": [[1.0, 2.0, ...], ...], "window": 50, "maxPValue": 0.001, "minMagnitude": 0.0}
and prints JSON on stdout:
    {"otava": "0.8.0", "changePoints": [[index, ...], ...]}
one list of change-point indices (the first value of each new level) per series.

Otava's own entry point for a single metric, otava.analysis.compute_change_points (the
windowed E-divisive with a t-test, its default since Hunter), is called directly, with
the series as a plain list as Otava's Series class passes it.

Exit status 3, with a message on stderr, when Otava is not installed
(pip install apache-otava==0.8.0).
"""

import json
import sys

try:
    from importlib.metadata import version

    from otava.analysis import compute_change_points
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"otava is not installed ({e}); pip install apache-otava==0.8.0", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    request = json.load(sys.stdin)
    window = int(request.get("window", 50))
    max_p = float(request.get("maxPValue", 0.001))
    min_magnitude = float(request.get("minMagnitude", 0.0))
    found = []
    for values in request["series"]:
        points, _weak = compute_change_points(
            [float(v) for v in values],
            window_len=window,
            max_pvalue=max_p,
            min_magnitude=min_magnitude,
        )
        found.append([int(p.index) for p in points])
    json.dump({"otava": version("apache-otava"), "changePoints": found}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
