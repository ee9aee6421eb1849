# The hardening comes first, before any setting is read or any process started: from here on
# no process of the job can read the runner's environment (agents/runner/hardening.py).
from agents.runner.hardening import HardeningError, harden

try:
    harden()
except HardeningError as exc:
    raise SystemExit(f"outpost runner: cannot protect its environment, refusing to run: {exc}") from None

from agents.runner.main import main  # noqa: E402

raise SystemExit(main())
