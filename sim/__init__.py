"""sim: the roofline cost model (Numba), latency/memory summaries and the ``mpqsim`` command line."""
