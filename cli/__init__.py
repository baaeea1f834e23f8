"""The ``agentplex`` command line: on top of the client library, the daemon and its plugins."""
