# Two commands on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC picks the torch build installed before anything else, e.g. for a CUDA machine:
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,lora,text,sweep,docs
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install demo test test-all docs lint clean learn2learn bench reproduce wheel-check

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@case ",$(EXTRAS)," in *,sweep,*|*,all,*) \
		$(PY) -m pip install --quiet --no-deps sweeps==0.3.0;; esac
	@if $(PY) -m pip list 2>/dev/null | grep -qi '^nvidia-'; then \
		echo "error: nvidia-* packages were installed; install torch first (TORCH_SPEC)"; exit 1; fi
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/metarec train experiments/synthetic/maml.yaml

test: install
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m "slow or not slow"

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on any warning: a broken
# link, a page missing from the nav, a result table a page includes that is not there.
# NO_MKDOCS_2_WARNING: mkdocs-material's banner about MkDocs 2.0, printed on every build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The built wheel, outside the checkout: a fresh venv in a temporary folder gets torch first (as
# `install` does, from the same wheel source), then the wheel and its dependencies; from that
# folder it trains a built-in experiment and reproduces a small synthetic table. No extras.
wheel-check: install
	@set -eu; start=$$(date +%s); tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	rm -rf build; \
	$(PY) -m pip wheel --quiet --no-deps -w "$$tmp/dist" .; \
	$(PY) -m zipfile -l "$$tmp"/dist/metarec-*.whl | grep 'metarec/experiments/synthetic/maml.yaml' > /dev/null; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet $(TORCH_SPEC); \
	"$$tmp/venv/bin/python" -m pip install --quiet "$$tmp"/dist/metarec-*.whl; \
	if "$$tmp/venv/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then \
		echo "error: nvidia-* packages were installed; install torch first (TORCH_SPEC)"; exit 1; fi; \
	cd "$$tmp"; \
	venv/bin/python -c "import metarec.paths as p; r = p.experiments_root(); \
		assert r == p.PACKAGED and 'site-packages' in str(r), r; print('experiments:', r)"; \
	venv/bin/metarec train synthetic/maml trainer.max_epochs=1 trainer.limit_train_batches=2 \
		trainer.progress_bar=false output_dir="$$tmp/runs"; \
	venv/bin/metarec reproduce synthetic --seeds 1 --methods mean,ridge --text none \
		--warm heldout --jobs 1 --set trainer.max_epochs=1 --out "$$tmp/rep"; \
	test -s "$$tmp/rep/table.md"; \
	echo "wheel-check passed in $$(( $$(date +%s) - start )) s"

lint: install
	$(VENV)/bin/ruff check metarec tests benchmarks
	$(VENV)/bin/ruff format --check metarec tests benchmarks

# learn2learn 0.2.0, the meta-training baseline, built for this venv (no CUDA torch, no gym).
learn2learn: install
	VENV=$(VENV) bash benchmarks/build_learn2learn.sh

# Speed benchmarks on MeLU's ML-1M (../shared/data/melu-ml1m); BENCH_ARGS=--synthetic for none.
# Each times 1 thread and every core; the last line prints both side by side per thread count.
bench: install learn2learn
	nice $(PY) benchmarks/meta_training.py $(BENCH_ARGS) --out results/bench/meta_training.json
	nice $(PY) benchmarks/serving.py $(BENCH_ARGS) --out results/bench/serving.json
	nice $(PY) benchmarks/embed_once.py $(BENCH_ARGS) --out results/bench/embed_once.json
	nice $(PY) benchmarks/ceiling.py $(BENCH_ARGS) --out results/bench/ceiling.json
	$(PY) benchmarks/efficiency.py results/bench/meta_training.json results/bench/serving.json

# MeLU's Table 2: every experiments/melu_ml1m/*.yaml x item text x 3 seeds, then its table and
# plot (results/melu_ml1m/table.md, plot.png), which docs/results/melu-ml1m.md includes.
DATA ?= ../shared/data
reproduce: install
	$(VENV)/bin/metarec reproduce melu-ml1m --root $(DATA)/melu-ml1m
	$(VENV)/bin/metarec results results/melu_ml1m

clean:
	rm -rf $(VENV) runs .pytest_cache site
