package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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

// buildShim builds cmd/sendmail once, next to the outbox binary, as the
// package installs it.
func buildShim(t *testing.T) string {
	t.Helper()
	shimOnce.Do(func() {
		// As the package installs them: the lean shim, and the whole one
		// (outbox-sendmail) beside it for what the lean one hands over.
		shimBin = filepath.Join(filepath.Dir(outboxBin), "sendmail")
		for _, b := range []struct{ path, tags string }{{shimBin, "shimlean"}, {filepath.Join(filepath.Dir(outboxBin), "outbox-sendmail"), ""}} {
			out, err := exec.Command("go", "build", "-tags", b.tags, "-o", b.path, "github.com/outbox-mta/outbox/cmd/sendmail").CombinedOutput()
			if err != nil {
				shimErr = fmt.Errorf("building %s: %v\n%s", b.path, err, out)
				return
			}
		}
	})
	if shimErr != nil {
		t.Fatal(shimErr)
	}
	return shimBin
}
