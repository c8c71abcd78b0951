"""The offline demo: train arms from one model on one data set, evaluate each, compare (``run``).

Its toy data and tiny model are :mod:`llm_jepa.toy`'s, shared with the benchmark and the tests.
"""
