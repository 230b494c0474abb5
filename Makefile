# The README's two commands: `make demo` (main job, no hardware) and `make test`.
.PHONY: setup demo test bench

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/robot-rl demo --task lift --out runs/demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/store_throughput.py
	.venv/bin/python benchmarks/sim_arm.py
	.venv/bin/python benchmarks/sim_base.py
