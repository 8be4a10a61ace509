"""The orchestrators: one module per command, running its stages in order (DESIGN.md, "Stages").

Import from the submodules, e.g. `from difflod.run.train import train`.
"""
