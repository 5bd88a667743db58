# Two commands for a fresh machine (Python 3.11, no ROS install needed):
#   make demo   the main job: replay the bundled EuRoC bag through the nodes, write out/demo/
#   make test   the whole suite (pytest, ruff and mypy run as tests)
# Both create the virtual environment first if it is missing.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# DDS discovery never leaves this machine, and each target has a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
# Two CPU threads for torch: the machine has two cores.
export OMP_NUM_THREADS ?= 2

.PHONY: demo test venv lint clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-57} $(VENV)/bin/meetup-ros demo --out out/demo

test: $(STAMP)
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-58} $(PY) -m pytest -q test

lint: $(STAMP)
	$(VENV)/bin/ruff check meetup_ros test launch scripts
	$(VENV)/bin/mypy

clean:
	rm -rf out build install log .mypy_cache .ruff_cache .pytest_cache
