"""Online learning for journeyflow (River): propensity to convert and to churn,
learned with delayed labels, and (next) the next-best-action bandit.

``features`` (what a model sees of a customer at a decision), ``labels``
(decisions and their delayed labels from event time: a transaction within
the horizon, the clock passing it, late corrections), ``propensity`` (online
models behind journeyflow's own interface: score, learn, snapshot, load;
built from configuration), ``quality`` (exact rolling ROC AUC, log loss and
calibration from recorded scores and later labels) and ``trainer`` (the
trainer that learns and snapshots, the scorer that swaps snapshots in).
The step records decisions through ``streams.core.decisions``; the worker
moves examples and snapshots through Kafka in ``streams.learning``.
"""
