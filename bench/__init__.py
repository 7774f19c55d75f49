"""
The benchmark harness: twisted_rproxy against nginx (and haproxy when it is
installed), side by side on the same machine, backend and config.  Run it
with C{python3 bench/run.py}; see docs/benchmarks.md.
"""
