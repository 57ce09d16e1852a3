VERSION ?= 0.0.0-dev
GOARCH  ?= $(shell go env GOARCH)
LDFLAGS := -s -w -X main.version=$(VERSION)
# PIE: address-space randomisation, and lintian takes a static PIE for what
# it is rather than a statically linked binary. The sendmail shims are the
# exception: they run once per message for an unprivileged caller, and
# static non-PIE binaries start without the dynamic loader relocating their
# data, which took 15% of a `sendmail -t -i` call (lintian is told so in
# packaging/deb/lintian-overrides). sendmail itself is a small C program
# (cmd/sendmail-c: it sends the call to the daemon's sendmail socket, where
# the shim's Go code runs); it hands every other call to outbox-sendmail,
# the whole shim in Go, installed beside it. CC must build for GOARCH.
CC     ?= cc
CFLAGS ?= -O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wall -Wextra -Wformat -Werror=format-security
LDFLAGS_C ?= -static -s -Wl,-z,relro -Wl,-z,now

# nfpm is fetched through the Go module proxy at this version into .tools/,
# so `make dist` needs nothing but Go.
NFPM_VERSION := v2.45.2
TOOLS        ?= $(CURDIR)/.tools
NFPM         := $(TOOLS)/nfpm-$(NFPM_VERSION)

# The Debian version nfpm writes (a semver pre-release becomes ~pre, and
# the package release is 1); the changelog must carry the same.
DEB_VERSION := $(subst -,~,$(VERSION))-1
REVISION    := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CHANGE_DATE := $(shell date -R -u -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))

.PHONY: build test bench dist clean

build:
	mkdir -p dist
	CGO_ENABLED=0 go build -trimpath -buildmode=pie -ldflags "$(LDFLAGS)" -o dist/outbox ./cmd/outbox
	$(CC) $(CFLAGS) $(LDFLAGS_C) -o dist/sendmail cmd/sendmail-c/sendmail.c
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o dist/outbox-sendmail ./cmd/sendmail

test:
	go test -race ./...

bench:
	go test -run XXX -bench . ./spool/ ./upstream/
	go run ./cmd/outbox-bench

$(NFPM):
	mkdir -p $(TOOLS)/tmp
	GOBIN=$(TOOLS)/tmp go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	mv $(TOOLS)/tmp/nfpm $@

# nfpm cannot compress files itself: the man pages and the Debian
# changelog are gzipped here (-n: no name or time stamp, reproducible).
dist: build $(NFPM)
	rm -rf dist/pkg dist/*.deb dist/*.rpm
	mkdir -p dist/pkg/man
	for m in packaging/man/*.[0-9]; do gzip -9n <$$m >dist/pkg/man/$${m##*/}.gz; done
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e 's/@REVISION@/$(REVISION)/' -e 's/@DATE@/$(CHANGE_DATE)/' \
		packaging/changelog.in | gzip -9n >dist/pkg/changelog.Debian.gz
	VERSION=$(VERSION) GOARCH=$(GOARCH) $(NFPM) package -p deb -f packaging/nfpm.yaml -t dist/
	VERSION=$(VERSION) GOARCH=$(GOARCH) $(NFPM) package -p rpm -f packaging/nfpm.yaml -t dist/

clean:
	rm -rf dist var
