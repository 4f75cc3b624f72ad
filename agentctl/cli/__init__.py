"""The command line: the one place that wires plan, runtime, services, log and views."""
