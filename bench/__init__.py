"""The benchmark harness: measured numbers for journeyflow, side by side with
a raw aiokafka baseline and an in-process CPU ceiling, all in one run.

- :mod:`bench.harness` runs everything (broker, topics, traffic, worker,
  baseline, profiler) and writes the results JSON.
- :mod:`bench.baseline` is the raw aiokafka loop (a subprocess, like the worker).
- :mod:`bench.ceiling` is the in-process, no-Kafka ceiling of the core.
- :mod:`bench.profile` attaches py-spy to the worker and summarises its samples.
- :mod:`bench.cli` is the ``journeyflow bench`` command (``python -m bench``).

Timings are measurements, never test assertions.
"""
