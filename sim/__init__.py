"""sim: the cost model (assign -> lower -> price, Numba), latency and memory summaries, the serving
simulator, and the latency / serve / demo verbs."""
