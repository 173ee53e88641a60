"""The edgebench controller: CLI and library for the workstation."""
