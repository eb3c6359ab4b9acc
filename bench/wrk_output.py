"""Reads wrk's report (run with --latency) into numbers; shared by the benchmarks."""

import re

_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}


def millis(text):
    """wrk's "582.00us", "1.10ms", "2.00s" in milliseconds (None if it is not a duration)."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


_SIZES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def size(text):
    """wrk's "1.23MB" in bytes (None if it is not a size)."""
    match = re.fullmatch(r"([\d.]+)(B|KB|MB|GB)", text)
    return float(match.group(1)) * _SIZES[match.group(2)] if match else None


def parse(output):
    """requests, rps, bytes_per_s, errors (socket errors + non-2xx/3xx), timeouts,
    non_2xx_3xx, socket_errors ({connect, read, write, timeout}), p50_ms, p99_ms, max_ms."""
    def number(pattern):
        match = re.search(pattern, output)
        return float(match.group(1)) if match else 0.0

    def percentile(p):
        # The distribution's own line, not a "+/- Stdev" column that ends in the same digits.
        match = re.search(rf"^\s+{p}%\s+(\S+)$", output, re.M)
        return millis(match.group(1)) if match else None

    transfer = re.search(r"Transfer/sec:\s+(\S+)", output)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    socket_errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests": int(number(r"(\d+) requests in")),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "bytes_per_s": size(transfer.group(1)) if transfer else None,
        "errors": (sum(int(x) for x in socket_errors.groups()) if socket_errors else 0)
        + int(number(r"Non-2xx or 3xx responses: (\d+)")),
        "timeouts": int(socket_errors.group(4)) if socket_errors else 0,
        "non_2xx_3xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  (int(x) for x in socket_errors.groups()))) if socket_errors else {},
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": millis(latency.group(3)) if latency else None,
    }
