# show1: `make install` sets up .venv, `make test` runs the offline test suite, `make demo` makes a video with the
# micro cascade shipped inside show1 (offline, CPU), `make micro-weights` rebuilds that cascade from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Without CUDA, install the CPU build of torch first (the default wheel brings gigabytes of CUDA libraries).
TORCH_CPU ?= torch==2.13.0
# PRESET=default (or any preset on the hub weights) pulls the real weights first: about 40 GB, and a GPU.
PRESET ?= micro
PROMPT ?= a red circle moving right on a black background
DEMO_OUTPUT ?= demo.mp4
MICRO_BUILD ?= .micro-build

.PHONY: install test demo lint tiny-weights micro-weights benchmarks official-parity clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1; then echo "CUDA found: installing the default torch"; \
	else echo "no CUDA: installing the CPU build ($(TORCH_CPU))"; $(BIN)/pip install -q "$(TORCH_CPU)"; fi
	$(BIN)/pip install -q -e ".[test]"
	touch $@

test: install
	$(BIN)/python -m pytest -q

demo: install
	@if [ "$(PRESET)" != micro ]; then $(BIN)/show1 weights pull; fi
	$(BIN)/show1 generate "$(PROMPT)" -o $(DEMO_OUTPUT) --preset $(PRESET) --seed 42 --overwrite

lint: install
	$(BIN)/ruff check show1_cli tests benchmarks

tiny-weights: install
	$(BIN)/python -m tests.tiny_checkpoints .tiny-weights

# Data, scaffold, the recipe's trainings in two lanes (resumable: rerun after an interruption), lock; hours on 2 CPU cores.
micro-weights: install
	$(BIN)/python -m show1_cli.training.micro $(MICRO_BUILD) show1_cli/data/micro

# All but those that need inputs or hours (official_parity.py: `make official-parity`; micro_prompt_reading.py: a model in
# training; micro_vae_colours.py: autoencoders to compare; loss_design.py EXPERIMENT: trainings) and report.py (their
# shared writer).
benchmarks: install
	for script in benchmarks/*.py; do case $$script in */official_parity.py|*/micro_prompt_reading.py|*/micro_vae_colours.py|*/loss_design.py|*/report.py) ;; *) $(BIN)/python $$script || exit 1;; esac; done

# show1 against the official Show-1 flow (docs/fidelity.md): OFFICIAL is a checkout of the official repository,
# OFFICIAL_PYTHON an interpreter with benchmarks/official/requirements.txt installed.
official-parity: install
	$(BIN)/python benchmarks/official_parity.py --official $(OFFICIAL) --official-python $(OFFICIAL_PYTHON)

clean:
	rm -rf $(VENV) .pytest_cache .tiny-weights $(MICRO_BUILD) .loss-design
