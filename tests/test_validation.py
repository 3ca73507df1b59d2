import math
import os

import pytest

from utils.validation import UQError, check_choice, check_range, check_writable_dir


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


def test_check_writable_dir_creates_nothing_and_accepts_new_folders(tmp_path):
    assert check_writable_dir("out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_writable_dir("out", tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a POSIX user without root's rights")
def test_check_writable_dir_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(UQError, match=r"^--out='.*locked/new' is not accepted: '.*locked' is not writable; accepted values"):
            check_writable_dir("--out", str(locked / "new"))
    finally:
        locked.chmod(0o700)
