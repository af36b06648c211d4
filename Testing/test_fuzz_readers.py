"""Fuzzed inputs (bounded, for CI): mutated files of every format end in a usable volume or one
project error, never another exception. The long run is ``scripts/fuzz_readers.py`` (it also
watches for crashes and hangs from outside; results in docs/ROBUSTNESS.md)."""
from __future__ import annotations

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from COVIDSegLib.errors import CovidSegError

from fuzzcases import make_case, read_case


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(min_value=0, max_value=2**32 - 1))
def test_a_mutated_file_is_read_or_refused_with_a_project_error(tmp_path, index):
    path = make_case(index, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library warning would be a second stderr line
        try:
            assert read_case(path) == "ok"
        except CovidSegError as error:
            assert "\n" not in str(error) and str(error)


def test_the_fuzz_seeds_are_valid_inputs(tmp_path):
    """Mutations start from usable files (real samples), so fuzzing reaches the deep read paths;
    only the 16-bit PNG and the unsigned multi-frame DICOM fail later, at the intensity check."""
    from fuzzcases import seeds
    outcomes = {}
    for path in seeds(tmp_path):
        try:
            outcomes[path.name] = read_case(path)
        except CovidSegError as error:
            outcomes[path.name] = "Intensities" in str(error) and "intensity"
    assert outcomes == {**{name: "ok" for name in outcomes}, "deep.png": "intensity", "frames.dcm": "intensity"}
