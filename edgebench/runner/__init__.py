"""The benchmark runner: a child process per job, speaking JSON lines.

Everything in this package must run on Python 3.6 with only numpy and the
framework installed (the 2019 stacks): no f-string '=' specifiers, no walrus,
no dataclasses, no third-party imports at module level.
"""
