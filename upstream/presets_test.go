package upstream

import (
	"testing"

	"github.com/outbox-mta/outbox/upstream/preset"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// Every preset is a configuration the SMTP client takes.
func TestPresetsAcceptedByNewSMTP(t *testing.T) {
	for _, name := range preset.Names() {
		region := ""
		if name == "ses" {
			region = "eu-west-1"
		}
		p, err := preset.Lookup(name, region)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		s, err := NewSMTP(SMTPConfig{SMTP: settings.SMTP{Name: name, Host: p.Host, Port: p.Port, TLS: p.TLS}})
		if err != nil {
			t.Errorf("%s: preset rejected by NewSMTP: %v", name, err)
			continue
		}
		s.Close()
	}
}
