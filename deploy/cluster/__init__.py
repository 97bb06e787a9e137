"""Replicas of the server behind HAProxy on one machine (``make cluster``, ``make
rolling-restart``, ``make cluster-stop``): :mod:`.replicas` runs them, :mod:`.haproxy` the
balancer. Operations tooling, not part of the server; ``docs/scaling.md`` tells the story."""
