"""Notifications that reach store managers (issue 17, docs/dashboard.md "Notifications"):
alert rules per site (rules.py), one pass that evaluates them and sends what changed
(passes.py) through apprise (delivery.py), the weekly digest (digest.py) and the pass run in
the background of `deskpulse serve` (background.py)."""
