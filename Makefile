# Two commands for a fresh machine (Python 3.11, no ROS install needed):
#   make demo   the main job: replay the bundled EuRoC bag through the nodes, write out/demo/
#   make test   the whole suite (pytest, ruff and mypy run as tests), in two workers
# Both create the virtual environment first if it is missing.
#   make retrain           retrain every network from the bundled bag with DFW -> out/retrained
#   make demo-retrained    the main job with those weights -> out/demo_retrained

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# DDS discovery never leaves this machine, and each target has a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
# Two CPU threads for torch: the machine has two cores.
export OMP_NUM_THREADS ?= 2

BAG := data/euroc_v1_01_easy_sample
RETRAIN := out/retrained
MEETUP := $(VENV)/bin/meetup-ros

.PHONY: demo test venv lint clean retrain demo-retrained

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
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-58} $(PY) -m pytest -q -n 2 test

# One command per network, all with DFW (the trainers' default optimizer), all from the
# bundled bag. The bag holds 4.7 s at rest, too little to learn flight from scratch, so the
# odometry network is fine-tuned from the shipped weights (--init); the other three start
# from random weights. Each run holds out what its log and weights' metadata say. The learned
# SLAM step trains 40 epochs here (the shipped one: the default 100, about 9 min).
retrain: $(STAMP)
	$(MEETUP) train controller --bag $(BAG) --out $(RETRAIN)/controller
	$(MEETUP) train depth --bag $(BAG) --out $(RETRAIN)/depth
	$(MEETUP) train optimizer --bag $(BAG) --out $(RETRAIN)/optimizer --epochs 40 \
	    --set depth_weights=$(RETRAIN)/depth/depth_code.pt
	$(MEETUP) train vio --bag $(BAG) --init vio.pt --lr 0.0003 --epochs 6 --out $(RETRAIN)/vio \
	    --set heldout_s=1.0 --set val_s=0.5 --set chunk=60
	mkdir -p $(RETRAIN)/models
	cp $(RETRAIN)/controller/governor.onnx $(RETRAIN)/depth/depth_code.pt \
	   $(RETRAIN)/optimizer/slam_optimizer.pt $(RETRAIN)/vio/vio.pt $(RETRAIN)/models/

demo-retrained: $(STAMP)
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-57} $(MEETUP) demo --models $(RETRAIN)/models --out out/demo_retrained

lint: $(STAMP)
	$(VENV)/bin/ruff check meetup_ros test launch scripts
	$(VENV)/bin/mypy

clean:
	rm -rf out build install log .mypy_cache .ruff_cache .pytest_cache
