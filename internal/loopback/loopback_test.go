package loopback

import "testing"

func TestHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "localhost.": true,
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "[::1]": true, "::1%lo": true,
		"::ffff:127.0.0.1": true,
		"":                 false, "localhost.example.com": false, "mylocalhost": false,
		"10.0.0.1": false, "::": false, "0.0.0.0": false, "smtp.gmail.com": false, "[2001:db8::1]": false,
	} {
		if got := Host(host); got != want {
			t.Errorf("Host(%q) = %v, want %v", host, got, want)
		}
	}
}
