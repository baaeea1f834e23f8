"""Panels: several members discussing one topic in turns, run by an orchestrator in the daemon."""
