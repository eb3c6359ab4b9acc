import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import h2load_output  # noqa: E402

# h2load 1.52 (Debian 12's nghttp2-client), -D 2 against nginx.
REPORT = """starting benchmark...
Application protocol: h2

finished in 2.01s, 5503.50 req/s, 4.47MB/s
requests: 11007 total, 11011 started, 11007 done, 10998 succeeded, 9 failed, 2 errored, 1 timeout
status codes: 10998 2xx, 0 3xx, 3 4xx, 4 5xx
traffic: 8.95MB (9382147) total, 1.96MB (2059017) headers (space savings 0.00%), 6.46MB (6771765) data
                     min         max         mean         sd        +/- sd
time for request:       47us     44.57ms       722us      2.01ms    91.53%
time for connect:       32us      2.21ms       594us      1.08ms    75.00%
"""


def test_report_numbers_and_protocol():
    r = h2load_output.parse(REPORT)
    assert r["requests"] == 11007 and r["rps"] == 5503.50
    assert r["protocol"] == "h2"
    assert r["non_2xx_3xx"] == 7 and r["timeouts"] == 1
    # h2load's failed holds the 4xx/5xx answers and the errored requests (the timed-out among them).
    assert r["errors"] == 9
    # Without the per-request log: no percentiles, the report's max.
    assert r["p50_ms"] is None and r["max_ms"] == 44.57


def test_percentiles_from_the_log():
    log = "".join(f"1796467806321259\t200\t{us}\n" for us in range(1000, 101000, 1000))  # 1..100 ms
    r = h2load_output.parse(REPORT, log)
    assert r["p50_ms"] == 50 and r["p99_ms"] == 99 and r["max_ms"] == 100


def test_percentile_nearest_rank():
    assert h2load_output.percentile([], 50) is None
    assert h2load_output.percentile([5], 99) == 5
    assert h2load_output.percentile([1, 2, 3, 4], 50) == 2


def test_clients_the_server_ended_early_give_the_rate_while_they_sent():
    """nginx closes a connection after keepalive_requests (1000) and h2load does not
    open another: 4 clients' 4000 requests, sent in the first 0.5 s of a 2 s run, are
    8000/s."""
    report = REPORT.replace("requests: 11007 total, 11011 started, 11007 done",
                            "requests: 4000 total, 4000 started, 4000 done")
    log = "".join(f"{1796467806000000 + i * 125}\t200\t100\n" for i in range(4000))  # 0.5 s
    r = h2load_output.parse(report, log, max_requests=4 * 1000)
    assert r["ended_early"] is True and round(r["rps"]) == 8000
    # Clients that did not reach the server's limit: the report's rate, however the
    # log's span compares (connecting takes part of the run).
    r = h2load_output.parse(REPORT, log, max_requests=64 * 1000)
    assert r["ended_early"] is False and r["rps"] == 5503.50
