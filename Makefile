# bucketgate: rate limiting for API Gateway REST APIs, on Upstash Redis.
#
#   make run     local API on :3000 (embedded Upstash-compatible store, demo keys,
#                live dashboard at http://127.0.0.1:3000/_local/)
#   make test    the whole suite; installs redis-server, chromium and the npm test tools when missing
#   make build   linux/arm64 bootstrap binaries for both functions (bin/<function>/bootstrap)
#   make bench   benchmarks (numbers for docs/BENCHMARKS.md, charts into docs/bench/)
#   make soak    SOAK_DURATION (10m) of mixed traffic under rolling faults (docs/RELIABILITY.md)
#
# `sam build` calls build-AuthorizerFunction / build-PredictFunction with
# ARTIFACTS_DIR set (BuildMethod: makefile); cmd/local calls the same targets
# with GOARCH set to the host's.

GO       ?= go
GOOS     ?= linux
GOARCH   ?= arm64
NPM_DIR  := tools/node
GOBUILD   = CGO_ENABLED=0 GOOS=$(GOOS) GOARCH=$(GOARCH) $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w"
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build build-AuthorizerFunction build-PredictFunction run test test-deps bench soak fuzz vet clean

all: build

build:
	$(MAKE) build-AuthorizerFunction ARTIFACTS_DIR=$(CURDIR)/bin/authorizer
	$(MAKE) build-PredictFunction ARTIFACTS_DIR=$(CURDIR)/bin/predict

build-AuthorizerFunction:
	$(GOBUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/authorizer

build-PredictFunction:
	$(GOBUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/predict

# Everything the integration tests need, installed only when missing.
test-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v node >/dev/null 2>&1 || { \
		echo "installing nodejs"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (the dashboard's browser test)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@[ -d $(NPM_DIR)/node_modules ] && [ $(NPM_DIR)/node_modules/.package-lock.json -nt $(NPM_DIR)/package-lock.json ] || { \
		echo "npm ci in $(NPM_DIR)"; cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error; }

test: test-deps
	$(GO) vet ./...
	BUCKETGATE_INTEGRATION=1 $(GO) test -race -count=1 -timeout 20m ./...

# The local API on :3000: both functions built for this machine, run as warm
# processes behind an API Gateway emulator, with an embedded
# Upstash-compatible store and fresh demo keys in tmp/local-keys.json. The
# banner prints the dashboard's URL (/_local/).
run:
	$(GO) run ./cmd/local start-api --port 3000 --demo-keys tmp/local-keys.json

# Every figure of docs/BENCHMARKS.md (about 10 minutes on 2 cores): Upstash
# cost per decision by traffic mix and policy against @upstash/ratelimit,
# denials, decision latency (loopback, +1 ms, +5 ms), the first decision of a
# cold container over TLS, the global limit, the EMF line's cost, decision-
# path throughput, the memory store at 1M keys, cold start and binary sizes;
# then the charts (docs/bench/*.svg and the data they show, from this run) and
# the micro-benchmarks of the client, the limiter, the memory store against
# its peers (bench/ is a separate module so peers stay out of go.mod) and
# predict.
bench: test-deps
	@mkdir -p bin
	BUCKETGATE_INTEGRATION=1 BUCKETGATE_BENCH=1 BUCKETGATE_BENCH_OUT=$(CURDIR)/bin/bench-results.md \
		BUCKETGATE_BENCH_CHARTS=$(CURDIR)/bin/bench-charts.json \
		$(GO) test -count=1 -timeout 30m -run '^TestBench$$' -v ./benchmarks/
	$(GO) run ./benchmarks/charts/render -in bin/bench-charts.json -out docs/bench
	cp bin/bench-charts.json docs/bench/results.json
	BUCKETGATE_INTEGRATION=1 $(GO) test -run '^$$' -bench 'RoundTrip' -benchmem -benchtime 0.5s ./internal/upstash/
	BUCKETGATE_INTEGRATION=1 $(GO) test -run '^$$' -bench . -benchmem -benchtime 0.5s ./internal/limiter/ ./internal/predict/
	cd bench && $(GO) test -run '^$$' -bench . -benchmem

# The soak (not in CI, not in make test): SOAK_DURATION of mixed traffic
# through start-api with 4 authorizer processes (clocks skewed ±1 s) on real
# redis-server and dynalite, while a schedule injects overlapping faults and
# kills processes; prints its invariants (lines starting with SOAK) and
# plots decisions by source to docs/soak-decisions.svg. SOAK_DURATION=60s
# for a quick run.
SOAK_DURATION ?= 10m
soak: test-deps
	BUCKETGATE_INTEGRATION=1 BUCKETGATE_SOAK=1 SOAK_DURATION=$(SOAK_DURATION) SOAK_SVG=$(CURDIR)/docs/soak-decisions.svg \
		$(GO) test -count=1 -v -timeout 60m -run '^TestSoak$$' ./reliability/soak/

# Each fuzz target for FUZZTIME (their seed corpora also run in `make test`).
FUZZTIME ?= 20s
FUZZ_TARGETS := \
	./internal/limiter:FuzzParseLimit ./internal/limiter:FuzzParseTierLimits \
	./internal/limiter:FuzzParseRouteCosts ./internal/limiter:FuzzParseFailureMode \
	./internal/limiter:FuzzUpstashReply ./internal/limiter:FuzzPlainParams \
	./internal/upstash:FuzzClientReply \
	./internal/authorizer:FuzzHandleEvent ./internal/authorizer:FuzzLoadSettings \
	./internal/local/sam:FuzzRenderTemplate ./internal/local/sam:FuzzMappingValue ./internal/local/sam:FuzzGatewayResponses \
	./internal/predict:FuzzParseInputs ./internal/local/upstashlocal:FuzzParse \
	./internal/local/startapi/dashboard:FuzzObserve

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .aws-sam
