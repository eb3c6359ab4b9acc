"""Reads h2load's report and its per-request log (--log-file) into the numbers
wrk_output.parse gives, so the benchmarks print both tools alike."""

import re


def percentile(values, p):
    """The p-th percentile (nearest rank) of values, or None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def parse(output, log="", max_requests=None):
    """requests, rps, errors (h2load's failed: answers that are not 2xx/3xx, and the
    errored requests, timed-out ones among them), timeouts, non_2xx_3xx, protocol (the one negotiated: h2,
    http/1.1), p50_ms, p99_ms, max_ms (from the log: one line per request, tab-separated
    start in us, status, duration in us; without it, the report's max only)."""
    def number(pattern, default=0.0):
        match = re.search(pattern, output)
        return float(match.group(1)) if match else default

    protocol = re.search(r"Application protocol: (\S+)", output)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    non_2xx_3xx = int(codes.group(3)) + int(codes.group(4)) if codes else 0
    failed = int(number(r"(\d+) failed"))
    timeouts = int(number(r"(\d+) timeout\b"))
    durations, spans = [], []
    for line in log.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0].strip().isdigit() and fields[2].strip().isdigit():
            durations.append(int(fields[2]) / 1000)
            spans.append((int(fields[0]), int(fields[0]) + int(fields[2])))
    report_max = re.search(r"time for request:\s+\S+\s+(\S+)", output)
    rps = number(r"finished in [\d.]+\w+, ([\d.]+) req/s")
    # h2load opens each connection once: a server that closes a connection after so
    # many requests (nginx's keepalive_requests, 1000 by default) ends that client
    # early, and the report divides by the whole run. When every client reached
    # max_requests (connections x that number), the rate is the one the log shows
    # while they were sending (ended_early).
    done = int(number(r"(\d+) done"))
    ended_early = bool(max_requests and spans and done >= max_requests)
    if ended_early:
        sent_s = (max(end for _, end in spans) - min(start for start, _ in spans)) / 1e6
        rps = done / sent_s if sent_s > 0 else rps
    return {
        "requests": int(number(r"requests: (\d+) total")),
        "rps": rps,
        "ended_early": ended_early,
        "errors": failed,
        "timeouts": timeouts,
        "non_2xx_3xx": non_2xx_3xx,
        "protocol": protocol.group(1) if protocol else None,
        "p50_ms": percentile(durations, 50),
        "p99_ms": percentile(durations, 99),
        "max_ms": max(durations) if durations else _millis(report_max.group(1)) if report_max else None,
    }


def _millis(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[match.group(2)] if match else None
