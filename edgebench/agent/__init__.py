"""The edgebench agent: a daemon per edge box."""
