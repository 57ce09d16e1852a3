package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/outbox-mta/outbox/internal/shimbuild"
)

// runOutbox runs `outbox ARGS...` and returns its stdout, stderr and exit code.
func runOutbox(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(outboxBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("outbox %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

var (
	shimOnce sync.Once
	shimBin  string
	shimErr  error
)

// buildShim builds sendmail (the C program) and outbox-sendmail once, next
// to the outbox binary, as the package installs them.
func buildShim(t *testing.T) string {
	t.Helper()
	shimOnce.Do(func() {
		shimBin = filepath.Join(filepath.Dir(outboxBin), "sendmail")
		shimErr = shimbuild.Build(filepath.Dir(outboxBin))
	})
	if shimErr != nil {
		t.Fatal(shimErr)
	}
	return shimBin
}
