package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminQueueList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.hcl")
	for _, tc := range []struct{ block, want, err string }{
		{``, "all", ""},
		{`admin { queue_list = "all" }`, "all", ""},
		{`admin { queue_list = "privileged" }`, "privileged", ""},
		{`admin {
  queue_list = "root"
}`, "", "relay.hcl:2:3: Invalid queue_list"},
	} {
		src := tc.block + "\nupstream \"capture\" {\n  type = \"maildir\"\n  path = \"md\"\n}\n"
		cfg, err := Parse(path, []byte(src))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.block, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.block, err)
			continue
		}
		if cfg.Admin.QueueList != tc.want {
			t.Errorf("%s: QueueList = %q, want %q", tc.block, cfg.Admin.QueueList, tc.want)
		}
	}
}
