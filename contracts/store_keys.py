"""Keys of the control store shared between processes (docs/interfaces.md, "Control store")."""
from __future__ import annotations

TABLE_KEY = "routing/table"
"""The routing table: written by the controller leader (contracts.routing_table.render_table),
read by every edge (contracts.routing_table.parse_table) and by game days."""
OVERRIDES_KEY = "control/overrides"
"""The operator's active drains and steers (failover.overrides), written with compare-and-set."""
FAILBACK_KEY = "control/failback"
"""Failback progress per region (failover.steering.FailbackProgress)."""
LEADER_KEY = "control/leader"
"""Who leads the controllers and where its control API listens."""
HEALTH_PREFIX = "health/"
"""health/<region>: the controller's view of one region's health."""
ROLLOUT_PREFIX = "rollout/"
"""rollout/<geo>: the bundle rollout plan of a geography (failover.rollout_plan), written with
compare-and-set by `regionctl rollout` and the controller leader that drives it."""
EXPERIMENTS_PREFIX = "experiments/"
"""experiments/<geo>/<id>: an A/B experiment of a geography (failover.experiments)."""
