"""Small example programs that ship with agentctl (used by the plans in ``plans/``)."""
