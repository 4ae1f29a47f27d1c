# The commands of the README, as targets. PYTHON picks the interpreter (a venv's, say).
PYTHON ?= python
# Extra flags, e.g. make demo ARGS="--results 200000 --drainers 4" or make test ARGS="-m process".
ARGS ?=

.PHONY: help install demo test lint bench

help:
	@echo "make install   pip install -r requirements.txt"
	@echo "make demo      python manage.py outbox_demo (embedded PostgreSQL when DATABASE_URL is unset)"
	@echo "make test      python -m pytest"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make bench     python bench/run.py (writes docs/BENCHMARKS.md; pip install -r bench/requirements.txt first)"
	@echo "Pass flags with ARGS=\"...\"."

install:
	$(PYTHON) -m pip install -r requirements.txt

demo:
	$(PYTHON) manage.py outbox_demo $(ARGS)

test:
	$(PYTHON) -m pytest $(ARGS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench:
	$(PYTHON) bench/run.py $(ARGS)
