# market-data-store. `make run` runs everything on embedded defaults;
# `make test` passes the tests. `make help` lists the rest.

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/market-data-store/mds/internal/version.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 20s
WITHPG      := $(GO) run ./internal/tools/withpg --
PYTHON      ?= python3
PYVENV      := clients/python/.venv

.PHONY: help build run test lint fuzz bench test-integration test-python image up down check-deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build bin/processor and bin/tickgen
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/processor ./cmd/processor
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tickgen ./cmd/tickgen

run: build ## run on embedded Kafka, a throwaway PostgreSQL and synthetic ticks (Ctrl-C stops)
	./bin/processor dev

test: lint ## gofmt, go vet, staticcheck, then every test with -race against a throwaway PostgreSQL
	$(WITHPG) $(GO) test -race -count=1 -timeout 15m ./...

lint: ## gofmt, go vet and staticcheck (the integration suite's build tag included)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags integration ./integration/...

fuzz: ## run each fuzz target for FUZZTIME (default 20s): decoder, settings loader, DSN handling
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/tick
	$(WITHPG) $(GO) test -run '^$$' -fuzz '^FuzzLoadSettings$$' -fuzztime $(FUZZTIME) ./internal/app
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzDSN$$' -fuzztime $(FUZZTIME) ./internal/secret

bench: ## end-to-end benchmark against the database ceiling (BENCHFLAGS='-kafka real': Apache Kafka, not kfake)
	$(GO) run ./bench/cmd/mdsbench $(BENCHFLAGS)

test-integration: ## integration suite on Apache Kafka 4.4 (java+mvn; Docker: testcontainers; MDS_IT_KAFKA=kfake: kfake)
	$(WITHPG) $(GO) test -tags integration -count=1 -p 1 -timeout 20m -v ./integration/...

test-python: ## Python client (clients/python): mypy, then pytest on the vectors, units and end to end against bin/processor
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/processor ./cmd/processor
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mds-test-saslbroker ./clients/python/tests/saslbroker
	test -x $(PYVENV)/bin/python || $(PYTHON) -m venv $(PYVENV)
	$(PYVENV)/bin/python -m pip install -q --disable-pip-version-check -e 'clients/python[test]'
	cd clients/python && .venv/bin/python -m mypy
	cd clients/python && MDS_TEST_REQUIRE_BROKER=1 .venv/bin/python -m pytest -p no:cacheprovider -ra

image: ## build the container image
	docker build -f deployments/Dockerfile --build-arg VERSION=$(VERSION) -t market-data-store:$(VERSION) .

up: ## start the docker compose stack (broker, TimescaleDB, 2 processors, tickgen, Prometheus, Grafana)
	docker compose -f deployments/docker-compose.yml up -d --build

down: ## stop the docker compose stack
	docker compose -f deployments/docker-compose.yml down -v

check-deploy: build ## check alert rules, kustomize and dashboards against a live /metrics scrape
	bash deployments/check.sh --processor bin/processor

clean: ## remove build output
	rm -rf bin
