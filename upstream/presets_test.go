package upstream

import (
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	for _, name := range PresetNames() {
		p, err := LookupPreset(name, "eu-west-1")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		s, err := NewSMTP(SMTPConfig{Name: name, Host: p.Host, Port: p.Port, TLS: p.TLS})
		if err != nil {
			t.Errorf("%s: preset rejected by NewSMTP: %v", name, err)
			continue
		}
		s.Close()
		if strings.Contains(p.Host, "{") || (p.TLS == "tls") != (p.Port == 465) {
			t.Errorf("%s: odd preset %+v", name, p)
		}
	}
	if p, err := LookupPreset("M365", ""); err != nil || p.Host != "smtp.office365.com" {
		t.Errorf("alias: %+v %v", p, err)
	}
	if p, err := LookupPreset("ses", "us-east-1"); err != nil || p.Host != "email-smtp.us-east-1.amazonaws.com" {
		t.Errorf("ses: %+v %v", p, err)
	}
	if _, err := LookupPreset("ses", ""); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("ses without region: %v", err)
	}
	if _, err := LookupPreset("nosuch", ""); err == nil || !strings.Contains(err.Error(), "gmail") {
		t.Errorf("unknown provider: %v", err)
	}
}
