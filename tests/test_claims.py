"""afvae.claims: the verdict follows the sign of the whole 95 % interval."""
import pytest

from afvae.claims import verdict


@pytest.mark.parametrize("lo, hi, expected", [
    (0.01, 0.2, "holds"), (1e-9, 1e-9, "holds"),
    (-0.3, -0.02, "fails"), (-1e-9, -1e-9, "fails"),
    (-0.1, 0.1, "undecided (CI overlaps)"), (0.0, 0.5, "undecided (CI overlaps)"),
    (-0.5, 0.0, "undecided (CI overlaps)"),
])
def test_verdict_is_the_sign_of_the_whole_interval(lo, hi, expected):
    assert verdict(lo, hi) == expected


def test_a_reversed_interval_is_refused():
    with pytest.raises(ValueError, match="lo <= hi"):
        verdict(0.2, 0.1)
