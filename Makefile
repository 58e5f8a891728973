# One command for the main job, one for all tests. Each installs what it needs first (idempotent).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install train test check-sync features nbtest pytest bench readme assignments grade lab

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

install: $(STAMP)  ## create .venv and install vae_course with its dev tools

train: install  ## the main job: train the default VAE on OpenMoji (CPU, about five minutes)
	$(BIN)/python -c "import sys; from vae_course.batch import run_batch; run_batch('nbs/train_vae.ipynb', '$(CURDIR)/runs/main', tiers=['cpu'], recipes=['default'], rerun=True, echo=sys.stdout)"

test: install check-sync nbtest pytest  ## everything CI runs

check-sync: install  ## notebooks clean and the library exactly what they export
	PATH=$(abspath $(BIN)):$$PATH bash .ci/check-sync

features: install  ## the course's feature network for sample metrics (trained once, cached in data/), before tests share it
	$(BIN)/python -c "from vae_course.metrics import emoji_feature_net; emoji_feature_net()"

nbtest: install features
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

pytest: install features
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadscope --durations=15 tests   # two workers, a test module each

bench: install  ## training speed and memory per recipe and tier on this device
	$(BIN)/python bench/train_speed.py

assignments: install  ## student versions of the exercises (nbgrader) in assignments/release/
	$(BIN)/python -m vae_course.assignments release

grade: install  ## autograde a filled-in exercise notebook: make grade NB=assignments/release/05_vae/05_vae.ipynb
	@test -n "$(NB)" || { echo "say which notebook: make grade NB=assignments/release/05_vae/05_vae.ipynb" >&2; exit 2; }
	$(BIN)/python -m vae_course.assignments grade "$(NB)"

lab: install  ## JupyterLab on the chapters (root, as in containers, needs --allow-root: added then)
	$(BIN)/jupyter lab nbs/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

readme: install  ## README.md from nbs/index.ipynb
	PATH=$(abspath $(BIN)):$$PATH bash .ci/readme
