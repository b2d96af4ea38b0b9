# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := $(wildcard requirements/constraints.txt)
SEED ?= 1
BOOKINGS ?= 20

.PHONY: venv run test soak test-containers clean-images lint docs e2e bench passwords clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev,supabase]'
	touch $(STAMP)

venv: $(STAMP)

## run: install everything, start a broker if none answers, create .env with an API token, run all services
run: venv
	scripts/ensure-broker.sh
	$(BIN)/ezrec init-env
	$(BIN)/ezrec up

## test: lint + the whole suite against real mosquitto, real files, real PyAV
## Two pytest workers (pytest-xdist), one per core: most tests wait on real-time bookings, so the suite halves
## while real-time recorder tests keep a core (three dropped camera frames under load); TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: venv
	scripts/system-deps.sh ffmpeg docker-compose postgresql chromium rtsp
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal)

## soak: the seeded soak of the whole system (tests/soak): BOOKINGS bookings (default 20) through the API while
## every fault kind strikes on the schedule SEED draws; prints a summary table, writes bench/results/soak-SEED.json.
## The camera is the seed's (odd seeds the RTSP server, even ones the synthetic camera) unless CAMERA=rtsp|synthetic
soak: venv
	scripts/system-deps.sh ffmpeg postgresql rtsp
	mkdir -p bench/results
	$(BIN)/python -m tests.soak.run --seed $(SEED) --bookings $(BOOKINGS) $(if $(CAMERA),--camera $(CAMERA))

## test-containers: docker-compose.yml for real (build, up, bookings through the API, restarts, down -v);
## installs and starts Docker if needed, and builds local stand-ins of the base images where none can be pulled
test-containers: venv
	scripts/ensure-docker.sh
	mkdir -p bench/results
	EZREC_CONTAINER_TESTS=1 EZREC_CONTAINER_REPORT=$(CURDIR)/bench/results/test-containers.json \
	  $(BIN)/python -m pytest tests/containers

## clean-images: remove this project's images (both images and the builder stages' leftovers), nothing else
clean-images:
	ids=$$(docker image ls -q --filter label=io.ezrec.project | sort -u); \
	  if [ -n "$$ids" ]; then docker image rm -f $$ids; fi

lint: venv
	$(BIN)/ruff check .

## docs: regenerate README's settings table and booking rules from the code (tests fail while they are stale)
docs: venv
	$(BIN)/python scripts/readme_sections.py --write

## bench: performance figures as JSON (not part of `make test`)
bench: venv
	scripts/system-deps.sh ffmpeg
	mkdir -p bench/results
	for script in bench/*.py; do $(BIN)/python $$script | tee bench/results/$$(basename $$script .py).json; done

passwords: venv
	$(BIN)/ezrec passwords

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
