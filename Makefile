# The two commands of the README: `make demo` (set up, then run the whole tiny lane) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU installs pin the CPU torch; on a GPU server keep your CUDA torch: make setup TORCH_SPEC=
TORCH_SPEC ?= torch==2.13.0
export MH_ARTIFACTS_DIR ?= $(CURDIR)/artifacts
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: setup system-deps demo test lint lock ui ui-postgres postgres-stop scores-app serve swanlab
setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt $(TORCH_SPEC) -e '.[dev]'
	$(PY) -m pip check
	grep -q 'mh-assets environment v2' $(VENV)/bin/activate || printf '%s\n' \
	  '# mh-assets environment v2: project-local Dagster home, the code location for the dagster CLI' \
	  'export DAGSTER_HOME="$(DAGSTER_HOME)"' \
	  'export DAGSTER_MODULE_NAME=mh_assets' \
	  'export MH_ARTIFACTS_DIR="$${MH_ARTIFACTS_DIR:-$(MH_ARTIFACTS_DIR)}"' \
	  '# dagster dev and dg dev hand their webserver a workspace file, which DAGSTER_MODULE_NAME would contradict' \
	  'dagster() { if [ "$$1" = dev ]; then env -u DAGSTER_MODULE_NAME dagster "$$@"; else command dagster "$$@"; fi; }' \
	  'dg() { if [ "$$1" = dev ]; then env -u DAGSTER_MODULE_NAME dg "$$@"; else command dg "$$@"; fi; }' \
	  >> $(VENV)/bin/activate
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $@

demo: setup
	$(VENV)/bin/dagster job execute -m mh_assets -j tiny_lane
	$(PY) -m mh_assets.where tiny

# What the tests start besides Python, from Debian when missing: a PostgreSQL server, and Chromium for the browser
# test (Playwright drives it; it downloads no browser of its own).
system-deps:
	@missing=""; \
	  { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; } || missing="postgresql"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  [ -z "$$missing" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }

test: setup system-deps
	$(VENV)/bin/ruff check mh_assets mh_assets_tests bench deploy
	$(VENV)/bin/ruff format --check mh_assets mh_assets_tests bench deploy
	$(VENV)/bin/pytest -q

# The webserver and the daemon on loopback, the project found from pyproject.toml (DAGSTER_MODULE_NAME, which the
# activated shell sets for the dagster CLI, would contradict the workspace dg dev hands its webserver).
ui: setup
	env -u DAGSTER_MODULE_NAME PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" $(VENV)/bin/dg dev -h 127.0.0.1 -p 3000

# The same UI on PostgreSQL storage: a local server of Debian's package in .postgres/ (127.0.0.1:$(PG_PORT)), the
# instance in .dagster-postgres/ from deploy/postgres/dagster.yaml. Stop the server: make postgres-stop.
PG_PORT ?= 5433
ui-postgres: setup system-deps
	mkdir -p .dagster-postgres && ln -sf $(CURDIR)/deploy/postgres/dagster.yaml .dagster-postgres/dagster.yaml
	eval "$$($(PY) deploy/postgres/local_server.py start --dir .postgres --port $(PG_PORT))" && \
	  env -u DAGSTER_MODULE_NAME DAGSTER_HOME="$(CURDIR)/.dagster-postgres" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	  VIRTUAL_ENV="$(CURDIR)/$(VENV)" $(VENV)/bin/dg dev -h 127.0.0.1 -p 3000

postgres-stop:
	$(PY) deploy/postgres/local_server.py stop --dir .postgres

# EvalScope's dashboard over a lane's latest evaluation (LANE=tiny|7b|32b), on loopback only.
LANE ?= tiny
scores-app: setup
	$(VENV)/bin/evalscope app --host 127.0.0.1 --port 9000 --outputs $(MH_ARTIFACTS_DIR)/benchmark_scores_$(LANE)/latest/evalscope

# A lane's latest merged model behind an OpenAI-compatible API on 127.0.0.1:$(PORT)/v1 (swift deploy, served as the
# lane's served_model_name). BACKEND=transformers|vllm|sglang|lmdeploy; empty: the lane's (vllm on GPU lanes).
PORT ?= 8000
BACKEND ?=
serve: setup
	$(PY) -m mh_assets.serve $(LANE) --port $(PORT) $(if $(BACKEND),--backend $(BACKEND))

# SwanLab's dashboard over the runs logged in local or offline mode (every lane logs under $(MH_ARTIFACTS_DIR)/swanlog),
# on loopback only.
SWANLAB_PORT ?= 5092
swanlab: setup
	$(VENV)/bin/swanlab watch $(MH_ARTIFACTS_DIR)/swanlog -h 127.0.0.1 -p $(SWANLAB_PORT)

# Re-resolve the lock after changing pyproject.toml's dependencies.
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install -q $(TORCH_SPEC) -e '.[dev]'
	.venv-lock/bin/pip check
	(echo '# Lock for pyproject.toml, resolved together with $(TORCH_SPEC) (CPU). Regenerate: make lock'; \
	 .venv-lock/bin/pip freeze --exclude-editable | grep -v '^torch==') > constraints.txt
	rm -rf .venv-lock
