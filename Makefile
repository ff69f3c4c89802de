# Set-up and checks for gradunc_ros.  Everything runs in .venv (created on demand).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: setup test lint unit selfcheck demo lock clean

# Frames for the demo: a CamVid root, a split, or a folder of images.
INPUT ?= ../shared/data/camvid

setup: $(STAMP)

$(STAMP): requirements/dev.txt requirements/constraints.txt setup.py package.xml
	$(PYTHON) -m venv $(VENV)
	# torch first, from the CPU file: a later resolver must never pull a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -c requirements/constraints.txt -r requirements/dev.txt
	$(PIP) -c requirements/constraints.txt --no-deps -e .
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -ra

unit: setup
	$(PY) -m pytest -ra -m "not process"

selfcheck: setup
	$(VENV)/bin/gradunc-selfcheck

demo: setup
	# exec: the demo is make's own child, so that it ends with make (it asks for a signal when its parent dies).
	exec $(PY) -m gradunc_ros.tools.demo --input "$(INPUT)" --out demo_out

lock: setup
	printf '# Exact versions for .venv, from pip freeze of a working set-up (Python 3.11).\n# Regenerate: make lock\n' > requirements/constraints.txt.new
	# --all keeps setuptools pinned (colcon and the editable install need it); pip itself is not pinned.
	$(PY) -m pip freeze --all --exclude-editable | grep -v -e '^torch==' -e '^pip==' >> requirements/constraints.txt.new
	echo 'torch==2.13.0' >> requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) build install log
