"""Where tests run checkpoint models: the CPU, or ``MOAIR_TEST_DEVICE`` (e.g. ``cuda``) to run the
same tiny-model tests on a GPU: ``MOAIR_TEST_DEVICE=cuda pytest tests/test_moai.py ...``."""

import os

DEVICE = os.environ.get("MOAIR_TEST_DEVICE", "cpu")
