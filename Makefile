# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rsforge-installed
PACKAGES := packages/core packages/datasets packages/tasks packages/geo[rasterio] packages/encoders[hf] packages/bridges packages/decoders packages/heads \
            packages/rewards packages/convert services/train services/serve
PYPROJECTS := $(addsuffix /pyproject.toml,$(subst [rasterio],,$(subst [hf],,$(PACKAGES))))

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torch and torchvision are pinned as a pair: the mirror's 2.14.1/0.29.1 wheels work together. Every other
# library is held at the version the README's numbers were measured with (constraints.txt, from
# `pip freeze --exclude-editable`).
$(STAMP): $(PYPROJECTS) Makefile constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -qq -c constraints.txt pytest ruff openai selenium hatchling editables schemathesis llm langchain-openai
	$(PY) -m pip install -qq -c constraints.txt $(foreach p,$(PACKAGES),-e '$(p)')
	touch $(STAMP)

# Starts afresh each time: the run is deterministic, so a previous runs/demo is reproduced, not lost.
demo: install
	rm -rf runs/demo
	$(VENV)/bin/rsforge run recipes/demo.yaml --out runs/demo

test: install
	$(VENV)/bin/ruff check .
	RSFORGE_STRICT_PLUGINS=1 $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

# Every bench/*.py in full (each in a subprocess with a time budget, within 15 min on 2 cores): writes
# bench/results/latest.json and latest.md, prints the table (each ratio, its spread, goal and verdict) and
# rewrites the README's benchmark table from it, also after a failed bench; exits 1 if a bench failed.
bench: install
	$(PY) bench/run_all.py; status=$$?; $(PY) bench/readme_table.py && exit $$status

clean:
	rm -rf runs data .pytest_cache
