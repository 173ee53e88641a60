"""Plumbing both sides use: the paho-mqtt wrapper, the embedded broker, PKI, job
signing, settings loading, the version, errors and the command-line edge.
It imports nothing of edgebench but ``schemas`` (tests/test_imports.py)."""
