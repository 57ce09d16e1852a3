VERSION ?= 0.0.0-dev
GOARCH  ?= $(shell go env GOARCH)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test bench dist clean

build:
	mkdir -p dist
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o dist/outbox ./cmd/outbox
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o dist/sendmail ./cmd/sendmail

test:
	go test -race ./...

bench:
	go test -run XXX -bench . ./spool/ ./upstream/
	go run ./cmd/outbox-bench

# Needs nfpm (go install github.com/goreleaser/nfpm/v2/cmd/nfpm@latest).
dist: build
	VERSION=$(VERSION) GOARCH=$(GOARCH) nfpm package -p deb -f packaging/nfpm.yaml -t dist/
	VERSION=$(VERSION) GOARCH=$(GOARCH) nfpm package -p rpm -f packaging/nfpm.yaml -t dist/

clean:
	rm -rf dist var
