"""The wrk report parser shared by the benchmarks."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wrk_output  # noqa: E402

REPORT = """Running 5s test @ http://127.0.0.1:8081/version
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    16.10ms    3.21ms   1.20s    99.00%
    Req/Sec     1.94k   150.00     2.20k    70.00%
  Latency Distribution
     50%   15.50ms
     75%   17.00ms
     90%  900.00us
     99%   31.10ms
  19350 requests in 5.00s, 4.21MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   3869.00
Transfer/sec:    862.00KB
"""


def test_parse_reads_every_figure():
    result = wrk_output.parse(REPORT)
    assert result["requests"] == 19350
    assert result["rps"] == 3869.0
    assert result["bytes_per_s"] == 862.0 * 1024
    assert result["errors"] == 1 + 2 + 0 + 3 + 4
    assert result["timeouts"] == 3
    assert result["non_2xx_3xx"] == 4
    assert result["socket_errors"] == {"connect": 1, "read": 2, "write": 0, "timeout": 3}
    assert result["p50_ms"] == 15.5
    # The distribution's 99% line, not the "+/- Stdev" column that also ends in 99.00%.
    assert result["p99_ms"] == 31.1
    assert result["max_ms"] == 1200.0


def test_parse_without_errors_or_percentiles():
    report = "\n".join(line for line in REPORT.splitlines()
                       if not line.lstrip().startswith(("Socket", "Non-2xx", "50%", "99%")))
    result = wrk_output.parse(report)
    assert (result["errors"], result["timeouts"]) == (0, 0)
    assert result["p50_ms"] is None and result["p99_ms"] is None


@pytest.mark.parametrize("text, expected", [("582.00us", 0.582), ("1.10ms", 1.1), ("2.00s", 2000.0),
                                            ("1.50m", 90000.0), ("12", None)])
def test_millis(text, expected):
    if expected is None:
        assert wrk_output.millis(text) is None
    else:
        assert wrk_output.millis(text) == pytest.approx(expected)


@pytest.mark.parametrize("text, expected", [("862.00KB", 862 * 1024), ("1.50MB", 1.5 * 1024 ** 2),
                                            ("120B", 120), ("fast", None)])
def test_size(text, expected):
    assert wrk_output.size(text) == expected
