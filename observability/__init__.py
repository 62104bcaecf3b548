"""Operating the stack: Prometheus configuration, rules and promtool, the controller's dashboard."""
