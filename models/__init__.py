"""Online learning for journeyflow (River): propensity to convert and to churn,
learned with delayed labels, and the next-best-action bandit.

What stands: ``features`` (what a model sees of a customer at a decision),
``propensity`` (online models behind journeyflow's own interface: score,
learn, snapshot, load; built from configuration), ``labels`` (delayed
labels from event time: a transaction within the horizon, the clock passing
it, late corrections) and ``quality`` (exact rolling ROC AUC, log loss and
calibration from recorded scores and later labels). None of it is wired
into the worker yet: the decision rules in ``streams/core/rules`` are the
only decision makers today (issue #10).
"""
