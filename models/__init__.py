"""Online learning for journeyflow (River): propensity to convert and to churn,
learned with delayed labels, and the next-best-action bandit.

Nothing here is wired into the worker yet; the decision rules in
``streams/core/rules`` are the only decision makers today (see the README's
roadmap).
"""
