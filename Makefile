# The two set-up commands of the README. PYTHON may name another interpreter (e.g. a venv's).
PYTHON ?= python3

.PHONY: demo test bench

demo:  ## install mpqsim and run the demonstration on built-in defaults
	$(PYTHON) -m pip install -q -e . && mpqsim demo

test:  ## install mpqsim with its test extra and run the test suite
	$(PYTHON) -m pip install -q -e '.[test]' && $(PYTHON) -m pytest -q

bench:  ## speed and fidelity measurements (recorded under benchmarks/results/)
	$(PYTHON) benchmarks/costmodel_speed.py
