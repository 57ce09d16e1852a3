package preset

import (
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	for _, name := range Names() {
		region := ""
		if name == "ses" {
			region = "eu-west-1"
		}
		p, err := Lookup(name, region)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if strings.Contains(p.Host, "{") || (p.TLS == "tls") != (p.Port == 465) {
			t.Errorf("%s: odd preset %+v", name, p)
		}
	}
	if p, err := Lookup("M365", ""); err != nil || p.Host != "smtp.office365.com" {
		t.Errorf("alias: %+v %v", p, err)
	}
	if p, err := Lookup("ses", "us-east-1"); err != nil || p.Host != "email-smtp.us-east-1.amazonaws.com" {
		t.Errorf("ses: %+v %v", p, err)
	}
	if _, err := Lookup("ses", ""); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("ses without region: %v", err)
	}
	if _, err := Lookup("nosuch", ""); err == nil || !strings.Contains(err.Error(), "gmail") {
		t.Errorf("unknown provider: %v", err)
	}
}

func TestPresetRegions(t *testing.T) {
	for _, tc := range []struct{ name, region, host, err string }{
		{"zoho", "", "smtp.zoho.com", ""},
		{"zoho", "eu", "smtp.zoho.eu", ""},
		{"zoho", "com.au", "smtp.zoho.com.au", ""},
		{"zoho-pro", "in", "smtppro.zoho.in", ""},
		{"zoho", "us", "", "com, eu, in"},
		{"mailgun", "", "smtp.mailgun.org", ""},
		{"mailgun", "eu", "smtp.eu.mailgun.org", ""},
		{"mailgun", "ap", "", "eu, us"},
		{"ses", "eu-west-1", "email-smtp.eu-west-1.amazonaws.com", ""},
		// SES does not run in AWS China.
		{"ses", "cn-north-1", "", "no SMTP endpoint"},
		{"google-relay", "", "smtp-relay.gmail.com", ""},
		{"microsoft-hve", "", "smtp.hve.mx.microsoft", ""},
	} {
		p, err := Lookup(tc.name, tc.region)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s/%s: error %v, want %q", tc.name, tc.region, err, tc.err)
		case tc.err == "" && (err != nil || p.Host != tc.host):
			t.Errorf("%s/%s: %q %v, want %s", tc.name, tc.region, p.Host, err, tc.host)
		}
	}
}
