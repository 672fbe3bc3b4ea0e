# One entry point for people and CI. `make study` sets up and runs the whole pipeline.
PYTHON ?= python3.11
VENV := .venv
BIN := $(if $(filter /%,$(VENV)),$(VENV),$(CURDIR)/$(VENV))/bin
# Stage commands call `python`: make it the project's, importing this checkout's package
# (a worker's clone runs its own code with the environment of another checkout).
# Every path is quoted: a checkout's path may hold spaces and any other character.
RUN := PATH="$(BIN):$$PATH" PYTHONPATH="$(CURDIR)/src$${PYTHONPATH:+:$$PYTHONPATH}" DVC_NO_ANALYTICS=1

.PHONY: setup setup-remotes study train verify test test-fast bench bench-workers vega

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv "$(VENV)"
	"$(BIN)/python" -m pip install --quiet --no-deps -r requirements.lock
	"$(BIN)/python" -m pip install --quiet --no-deps -e .
	touch "$@"

# Optional: DVC's SSH and S3 remotes (dvc-ssh, dvc-s3) and the S3 emulator their tests use.
setup-remotes: setup $(VENV)/.remotes-installed

$(VENV)/.remotes-installed: requirements-remotes.lock | $(VENV)/.installed
	"$(BIN)/python" -m pip install --quiet --no-deps -r requirements-remotes.lock
	touch "$@"

# Ctrl-C (or a scheduler's SIGTERM to the job) reaches make too, which then ends on its own
# signal: a recipe so interrupted exits 0, so that make adds no "Error 130" under the
# command's own line on what finished.
INTERRUPTIBLE = i=; trap i=1 INT TERM HUP; $(1); s=$$?; [ -n "$$i" ] || exit $$s

# The whole pipeline; its training stages spread over one worker per CPU (WORKERS=N to choose).
study: setup
	@$(call INTERRUPTIBLE,$(RUN) "$(BIN)/python" -m initstudy.parallel $(if $(WORKERS),--workers $(WORKERS)) \
	  --command "make study$(if $(WORKERS), WORKERS=$(WORKERS))")

# Worker i of N trains its share of the study's runs and, when the project has a default
# DVC remote, pushes them with their run-cache entries: `make train SHARD=2/4`.
# No `setup` here: cluster tasks share one environment, made once before they start.
SHARD ?= 1/1
train:
	@$(call INTERRUPTIBLE,$(RUN) "$(BIN)/python" -m initstudy.shards $(SHARD) --command "make train SHARD=$(SHARD)")

# Re-hash every output and input of dvc.lock and the DVC cache's objects behind them; repair
# what is damaged (fetch it again or remake it). VERIFY_ARGS=--no-repair only reports.
verify: setup
	@$(call INTERRUPTIBLE,$(RUN) "$(BIN)/python" -m initstudy.verify $(VERIFY_ARGS))

# The whole suite; `make test-fast`: the tests that need no training stage, server, browser
# or emulated CPU (the markers of pyproject.toml pick any other slice: pytest -m ...).
# Tests run in one process per CPU (TEST_WORKERS=N to choose), a file's tests in one of them.
TEST_WORKERS ?= auto
PYTEST := $(RUN) "$(BIN)/python" -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not training and not servers and not browser and not emulated"

bench: setup
	$(RUN) "$(BIN)/python" bench/benchmark.py $(BENCH_ARGS)

bench-workers: setup
	$(RUN) "$(BIN)/python" bench/workers.py $(BENCH_ARGS)

# Update the Vega libraries inlined in the report template (versions pinned in plots/vega/package.json).
vega:
	npm ci --prefix plots/vega --ignore-scripts --no-audit --no-fund
	$(PYTHON) plots/vega/build.py
