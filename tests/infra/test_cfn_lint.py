"""cfn-lint finds no error (and, with the project's settings, no warning) in any template."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cfn_lint_passes_every_synthesized_template(synth):
    templates = sorted(str(p) for p in synth.outdir.glob("assembly-*/*.template.json"))
    # dev, staging, prod x network, data, registry, fleet, audit, observability
    assert len(templates) == 3 * 6
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--config-file", str(ROOT / ".cfnlintrc.yaml"), "--", *templates],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
