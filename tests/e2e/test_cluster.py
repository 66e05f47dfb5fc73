"""On a real Kubeflow + KServe cluster: the whole loop (:mod:`tests.e2e.loop`, also ``make e2e``).

Runs only with ``KFP_HOST`` set (tests/conftest.py skips ``e2e`` tests otherwise, with the reason shown by
``-ra``); the knobs are the environment variables listed in tests/e2e/loop.py.
"""

import pytest

from tests.e2e import loop

pytestmark = pytest.mark.e2e


def test_loop_on_cluster(capsys):
    rc = loop.main([])
    out = capsys.readouterr().out
    assert rc == 0, out
