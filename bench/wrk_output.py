"""Reads wrk's report (run with --latency) into numbers; shared by the benchmarks."""

import re

_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}


def millis(text):
    """wrk's "582.00us", "1.10ms", "2.00s" in milliseconds (None if it is not a duration)."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse(output):
    """requests, rps, errors (socket errors + non-2xx/3xx), timeouts, p50_ms, p99_ms, max_ms."""
    def number(pattern):
        match = re.search(pattern, output)
        return float(match.group(1)) if match else 0.0

    def percentile(p):
        # The distribution's own line, not a "+/- Stdev" column that ends in the same digits.
        match = re.search(rf"^\s+{p}%\s+(\S+)$", output, re.M)
        return millis(match.group(1)) if match else None

    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    socket_errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests": int(number(r"(\d+) requests in")),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "errors": (sum(int(x) for x in socket_errors.groups()) if socket_errors else 0)
        + int(number(r"Non-2xx or 3xx responses: (\d+)")),
        "timeouts": int(socket_errors.group(4)) if socket_errors else 0,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": millis(latency.group(3)) if latency else None,
    }
