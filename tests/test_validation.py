import math

import pytest

from utils.validation import UQError, check_choice, check_range


def test_check_choice_accepts_and_returns():
    assert check_choice("method", "GA", ["GA", "NPO"]) == "GA"


def test_check_choice_names_parameter_value_and_choices():
    with pytest.raises(ValueError, match=r"method='GAX'.*'GA', 'NPO'"):
        check_choice("method", "GAX", ["GA", "NPO"])


def test_uqerror_is_a_valueerror():
    assert issubclass(UQError, ValueError)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
def test_check_range_inclusive(value):
    assert check_range("gamma", value, 0, 1) == value


@pytest.mark.parametrize("value", [0.0, 100.0, -1, math.nan, "5", True])
def test_check_range_rejects(value):
    with pytest.raises(ValueError, match="gamma"):
        check_range("gamma", value, 0, 100, low_inclusive=False, high_inclusive=False)


def test_check_range_integer():
    assert check_range("bits", 4, 2, 8, integer=True) == 4
    with pytest.raises(ValueError, match=r"bits=4\.5.*integer"):
        check_range("bits", 4.5, 2, 8, integer=True)
