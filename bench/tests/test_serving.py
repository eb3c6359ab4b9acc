"""bench/serving.py's summary: the comparisons #33 asks for, computed from one run's
figures (the benchmark itself runs on the demo server and asserts nothing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serving  # noqa: E402


def results(**rps):
    """Every target at 64 and 1024 connections, the given rates at 64; at 1024 half of them,
    but granian's a quarter (so a ratio at 1024 differs from the one at 64)."""
    out = {}
    for name, _ in serving.TARGETS:
        rate = rps.get(name, 1000.0)
        out[(name, 64)] = {"rps": rate, "errors": 0}
        out[(name, 1024)] = {"rps": rate / (4 if name == serving.GRANIAN_HTTPS else 2),
                             "errors": 3 if name == serving.DEV else 0}
    return out


def test_the_summary_compares_nginx_with_the_backend_it_fronts_and_each_stack_with_the_dev_server():
    lines = serving.summarize(results(**{
        serving.DEV: 1000.0, serving.GTHREAD: 5000.0, serving.GTHREAD_HTTPS: 4500.0,
        serving.GRANIAN: 20000.0, serving.GRANIAN_HTTPS: 12000.0, serving.STACK_HTTPS: 3000.0}), 64, 1024)
    assert lines[0].startswith("- nginx with TLS in front of gunicorn gthread") and "10% below" in lines[0]
    assert "40% below granian alone (12000 against 20000 req/s)" in lines[1]
    assert "the default (gunicorn sync) 3.0x, gthread 4.5x, granian 12.0x" in lines[2]
    assert lines[2].endswith(f"(the best: {serving.GRANIAN_HTTPS})")
    assert "+167%; at 1024: +33%" in lines[3]
    assert "dev server 3, deployed stack (HTTPS) 0" in lines[4]


def test_every_target_the_summary_reads_is_measured():
    names = {name for name, _ in serving.TARGETS}
    assert {serving.DEV, serving.SYNC, serving.GTHREAD, serving.GRANIAN, serving.STACK_HTTP,
            serving.STACK_HTTPS, serving.GTHREAD_HTTPS, serving.GRANIAN_HTTPS} <= names
    assert len(names) == len(serving.TARGETS)
