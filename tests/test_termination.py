"""SIGTERM as an interruption, and interruptions kept out of library logs."""
import logging
import os
import signal
import sys

import pytest

from patsearch.termination import Terminated, quiet_interruptions, sigterm_as_interrupt


def test_sigterm_raises_terminated_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # Python runs the handler between bytecodes, at the first of these at the latest
                pass
    assert isinstance(info.value, KeyboardInterrupt) and Terminated.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before


def test_interruptions_are_left_out_of_the_log(caplog):
    logger = logging.getLogger("patsearch.test.quiet")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        with quiet_interruptions(logger.name):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                logger.warning("trial 0 failed", exc_info=sys.exc_info())
            logger.warning("trial 0 failed with value None")  # the follow-up record of the same failure
            try:
                raise ValueError("real")
            except ValueError:
                logger.warning("trial 1 failed", exc_info=sys.exc_info())
            logger.warning("trial 1 failed with value None")
        logger.warning("after")
    assert [r.getMessage() for r in caplog.records] == ["trial 1 failed", "trial 1 failed with value None", "after"]
