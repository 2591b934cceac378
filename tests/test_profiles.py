"""Performance profiles, their scores and ranks, against a small table of times worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from optrun.profiles import profile, ranks, ratios, scores

INF = np.inf
# four problems, three labels: the third problem no label reached; on the fourth two labels tie
TIMES = np.array(
    [
        [10.0, 20.0, INF],
        [30.0, 15.0, 45.0],
        [INF, INF, INF],
        [8.0, 8.0, 40.0],
    ]
)


def test_ratios_are_each_time_over_the_problems_best_and_inf_where_never_reached() -> None:
    expected = [[1, 2, INF], [2, 1, 3], [INF, INF, INF], [1, 1, 5]]
    np.testing.assert_array_equal(ratios(TIMES), expected)


def test_the_profile_is_the_share_of_problems_within_tau_of_the_best() -> None:
    rho = profile(ratios(TIMES), np.array([1.0, 1.99, 2.0, 3.0, 5.0]))
    # label 0 is best on problems 1 and 4 and twice the best on 2; label 2 is 3x on 2 and 5x on 4
    np.testing.assert_array_equal(rho[0], [2 / 4, 2 / 4, 3 / 4, 3 / 4, 3 / 4])
    np.testing.assert_array_equal(rho[1], [2 / 4, 2 / 4, 3 / 4, 3 / 4, 3 / 4])
    np.testing.assert_array_equal(rho[2], [0, 0, 0, 1 / 4, 2 / 4])


def test_the_score_is_the_normalised_area_under_the_profile_up_to_tau_max() -> None:
    # by hand, tau_max 4: max(0, 4 - r) / 3 averaged over the problems
    by_hand = [(1 + 2 / 3 + 0 + 1) / 4, (2 / 3 + 1 + 0 + 1) / 4, (0 + 1 / 3 + 0 + 0) / 4]
    np.testing.assert_allclose(scores(ratios(TIMES), 4.0), by_hand, rtol=1e-15)
    # and as the area under the profile, integrated numerically on a fine grid
    taus = np.linspace(1.0, 4.0, 300_001)
    rho = profile(ratios(TIMES), taus)
    area = ((rho[:, 1:] + rho[:, :-1]) / 2 * np.diff(taus)).sum(axis=1) / 3.0
    np.testing.assert_allclose(scores(ratios(TIMES), 4.0), area, atol=1e-5)


@pytest.mark.parametrize("tau_max", [2.0, 4.0, 10.0])
def test_best_everywhere_scores_1_and_never_within_tau_max_scores_0(tau_max: float) -> None:
    times = np.array([[1.0, 2.0 * tau_max], [3.0, INF]])
    np.testing.assert_array_equal(scores(ratios(times), tau_max), [1.0, 0.0])


def test_ranks_share_the_mean_place_on_ties_and_never_reached_is_last() -> None:
    expected = [[1, 2, 3], [2, 1, 3], [2, 2, 2], [1.5, 1.5, 3]]
    np.testing.assert_array_equal(ranks(TIMES), expected)
    np.testing.assert_array_equal(ranks(TIMES).mean(axis=0), [1.625, 1.625, 2.75])


def test_a_target_reached_before_training_makes_any_later_label_infinitely_slower() -> None:
    np.testing.assert_array_equal(ratios(np.array([[0.0, 0.0, 3.0]])), [[1, 1, INF]])
