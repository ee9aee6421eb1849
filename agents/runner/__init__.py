"""The Outpost runner: the program inside every agent task (``python -m agents.runner``).

It claims one job from the control plane, prepares the workspace, runs the agent CLI through
its adapter, uploads the result bundle, reports the outcome and exits. The protocol is the
claim protocol of ``docs/design.md``. Standard library only: it runs in slim agent images.
"""

VERSION = "0.1.0"
