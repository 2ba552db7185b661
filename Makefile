# swarmtrain — every command a user or CI needs. `make help` lists them.
GO        ?= go
BIN       ?= bin/swarmtrain
# Where datasets live: $(DATA)/mnist. CI points this at ../shared/data.
DATA      ?= $(if $(SWARMTRAIN_DATA),$(SWARMTRAIN_DATA),$(HOME)/.cache/swarmtrain/data)
export SWARMTRAIN_DATA := $(DATA)
# Packages with goroutines and shared state: run them under the race detector.
RACE_PKGS ?= ./node/... ./storage/... ./verify/... ./cmd/...
FUZZTIME  ?= 10s

.PHONY: help build build-openblas test test-long test-openblas test-cuda demo bench fuzz data clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/swarmtrain (pure Go)
	$(GO) build -o $(BIN) ./cmd/swarmtrain

build-openblas: ## build bin/swarmtrain with OpenBLAS (needs libopenblas-dev)
	CGO_LDFLAGS=-lopenblas $(GO) build -tags openblas -o $(BIN) ./cmd/swarmtrain

test: ## vet and every test in its short form (one mixed adversarial swarm, 3 demo runs); -race on the concurrent packages
	$(GO) vet ./...
	$(GO) test -count=1 -short -timeout 30m ./...
	$(GO) test -count=1 -short -race -timeout 30m $(RACE_PKGS)

test-long: ## the long tests CI adds: every adversary kind, the 40-round end-to-end swarm, the demo 20 times, the dashboard over 10 rounds, Kubo's 1 GiB CIDs, PyTorch loading our checkpoints, the swarm across two NATs (root: network namespaces), the text swarm and the text demo
	$(GO) test -count=1 -timeout 60m -run 'TestAdversaries|TestEndToEndSwarm|TestDemoAlwaysEnds|TestDashboardInChromium|TestPyTorch|TestNATSwarm|TestOwnTextSwarm|TestDemoText' ./node ./cmd/swarmtrain
	$(GO) test -count=1 -run 'TestFileCIDsMatchKubo' ./storage

test-openblas: ## the train tests once more on OpenBLAS
	CGO_LDFLAGS=-lopenblas $(GO) test -count=1 -tags openblas ./train/...

CUDA_HOME  ?= /usr/local/cuda
CUDNN_HOME ?=
CUDA_PKGS  ?= ./benchmarks/gpu ./train/...
test-cuda: ## CUDA tests where Go, a GPU and CUDA + cuDNN headers share a machine (else skipped with a message; scripts/gpu/ runs them on a GPU machine without Go)
	@if ! nvidia-smi -L >/dev/null 2>&1; then \
		echo "test-cuda: skipped: no NVIDIA GPU here (nvidia-smi finds none); scripts/gpu/README.md runs these on a GPU machine"; \
	elif [ ! -e "$(CUDA_HOME)/include/cuda.h" ]; then \
		echo "test-cuda: skipped: no CUDA toolkit at CUDA_HOME=$(CUDA_HOME) (cuda.h missing)"; \
	else \
		CGO_CFLAGS="-I$(CUDA_HOME)/include $(if $(CUDNN_HOME),-I$(CUDNN_HOME)/include)" \
		CGO_LDFLAGS="-L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs $(if $(CUDNN_HOME),-L$(CUDNN_HOME)/lib)" \
		$(GO) test -count=1 -tags cuda $(CUDA_PKGS); \
	fi

demo: build data ## a whole swarm on 127.0.0.1: 1 coordinator + 3 contributors (fetches MNIST first)
	$(BIN) demo

# bench runs the transfers at 50 MB only: ten 500 MB bitswap fetches take
# many minutes (benchmarks/README.md has the 500 MB command).
bench: ## the go-test benchmarks (benchmarks/README.md has the figures and the other programs)
	TRANSFER_SIZES=50 $(GO) test -run '^$$' -bench . -benchtime 10x ./benchmarks/...

# A fuzz run that ends "context deadline exceeded" with no failing input
# written is the go command's fuzz engine missing its own time limit under
# load (seen once in CI on FuzzDecode), not a finding: it runs once more.
fuzz: ## a short fuzz pass over every Fuzz target (decoders of network bytes)
	@set -e; grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]+' . | sort | \
	while IFS= read -r hit; do \
		file=$${hit%%:*}; fn=$${hit##*func }; pkg=./$$(dirname $${file#./}); \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		out=$$(mktemp); \
		if $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then cat $$out; rm -f $$out; continue; fi; \
		cat $$out; \
		if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
			rm -f $$out; \
			echo "fuzz $$pkg $$fn: the fuzz engine stopped at its own time limit with no failing input; once more"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
		else rm -f $$out; exit 1; fi; \
	done

data: build ## download MNIST into $(DATA)/mnist and verify its hashes
	$(BIN) data get mnist --dataset-dir $(DATA)/mnist

clean:
	rm -rf bin
