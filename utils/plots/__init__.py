"""Tested plotting functions, one module per topic (widgets call these too).

Every function takes data (tensors, arrays, DataFrames), draws on a given or new matplotlib ``Axes``
and returns the ``Figure``; axes are labelled with units.
"""
