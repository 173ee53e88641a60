"""The controller's commands, one module per noun, each a thin caller of the library.

controller/cli.py registers them.
"""
