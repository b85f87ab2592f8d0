"""The gateway raises its soft open-file limit to the hard one at start."""

import subprocess
import sys

PROBE = """
import resource
from crdgate.run import raise_open_file_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
before, after = raise_open_file_limit()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
print(before, after, soft, hard)
print(*raise_open_file_limit())
"""


def test_soft_open_file_limit_is_raised_to_the_hard_limit():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    first, second = out.stdout.splitlines()
    before, after, soft, hard = map(int, first.split())
    assert before == 256
    import resource

    assert soft == after == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    assert second.split() == [str(soft), str(soft)], "already at the hard limit: nothing to do"
