"""The whole pipeline survives faults and SIGKILLs with nothing lost, duplicated or paid twice.

500 synthetic samples through ``vlaa-data run`` against a scripted server that injects every
kind of fault, the run killed with SIGKILL 10 times and restarted (``vlaa_data.testing.soak``;
``benchmarks/soak.py`` prints the same counts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vlaa_data.testing.soak import FAULTS, SoakConfig, run_soak


@pytest.mark.slow
def test_the_pipeline_under_faults_and_kills_ends_where_a_clean_run_ends(tmp_path: Path) -> None:
    report = run_soak(tmp_path, SoakConfig(samples=500, kills=10, seed=0))
    summary = report.to_dict()
    assert report.kills == 10 and report.runs > 10, summary
    assert all(report.faults[fault] > 0 for fault in FAULTS), summary
    assert report.faults["truncated"] > 0, summary
    assert sum(report.final_states.values()) == 500 and not report.pending, summary
    states = {state.split(":")[0] for state in report.final_states}
    assert states == {"split", "rejected", "failed"}, summary
    assert report.duplicated_results == 0 and report.repaid_requests == 0, summary
    assert report.results_compared > 1000 and not report.results_differing, summary
    assert report.export_rows > 0 and not report.rows_differing, summary
    assert not report.rows_unexplained, summary
