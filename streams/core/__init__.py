"""The pure core: functions of (state, event) -> (new state, outputs).

Nothing here imports Faust, aiokafka, prometheus_client or os.environ, or
reads the wall clock (a unit test walks the imports). Time is the event's
``occurred_at``; configuration is passed in. The Faust shell and
``journeyflow replay`` run exactly this code.
"""
