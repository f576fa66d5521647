"""The collector settings the ceap command starts with."""

import gc

from ceap_engine.runtime.collector import YOUNG_GENERATION, tune_collector


def test_tune_collector_freezes_what_exists_and_widens_only_the_young_generation():
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == (YOUNG_GENERATION, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
