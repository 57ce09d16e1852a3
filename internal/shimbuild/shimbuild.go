// Package shimbuild builds the sendmail programs for tests, as the package
// installs them: sendmail, the small C program (cmd/sendmail-c), and
// outbox-sendmail, the whole shim (cmd/sendmail), side by side.
package shimbuild

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build writes sendmail and outbox-sendmail into dir.
func Build(dir string) error {
	src, err := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/outbox-mta/outbox/cmd/sendmail").Output()
	if err != nil {
		return fmt.Errorf("finding cmd/sendmail: %v", err)
	}
	csrc := filepath.Join(filepath.Dir(strings.TrimSpace(string(src))), "sendmail-c", "sendmail.c")
	cc, err := exec.LookPath("cc")
	if err != nil {
		return fmt.Errorf("no C compiler to build %s (.ci/run installs gcc): %v", csrc, err)
	}
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", filepath.Join(dir, "sendmail"), csrc).CombinedOutput(); err != nil {
		return fmt.Errorf("cc %s: %v\n%s", csrc, err, out)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "outbox-sendmail"), "github.com/outbox-mta/outbox/cmd/sendmail").CombinedOutput(); err != nil {
		return fmt.Errorf("building outbox-sendmail: %v\n%s", err, out)
	}
	return nil
}
