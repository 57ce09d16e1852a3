//go:build !shimlean

package sendmailshim

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanShimLinks keeps the lean sendmail lean: every package it links
// costs each call its initialisation and page-in, so the heavy ones stay
// with the whole shim.
func TestLeanShimLinks(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "shimlean", "-deps", "github.com/outbox-mta/outbox/cmd/sendmail").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{"github.com/hashicorp/", "github.com/zclconf/", "go.etcd.io/bbolt", "github.com/emersion/go-smtp",
			"crypto/tls", "crypto/x509", "crypto/internal/fips140", "encoding/json", "net/http", "github.com/outbox-mta/outbox/config"} {
			if pkg == heavy || strings.HasPrefix(pkg, heavy) && (strings.HasSuffix(heavy, "/") || pkg[len(heavy)] == '/') {
				if pkg != "github.com/outbox-mta/outbox/config/lite" {
					t.Errorf("the lean sendmail links %s", pkg)
				}
			}
		}
	}
}
