package upstream

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/upstream/settings"
)

// echoAuthServer is a loopback SMTP server without TLS that answers AUTH
// with a 535 quoting what the client sent, as some servers do.
func echoAuthServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				c.Write([]byte("220 echo.test ESMTP\r\n"))
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					verb := strings.ToUpper(strings.Fields(line + " x")[0])
					switch verb {
					case "EHLO":
						c.Write([]byte("250-echo.test\r\n250 AUTH PLAIN LOGIN\r\n"))
					case "AUTH":
						c.Write([]byte("535 5.7.8 authentication failed for [" + strings.TrimPrefix(line, "AUTH PLAIN ") + "]\r\n"))
					case "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("503 5.5.1 no\r\n"))
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// TestAuthEchoNotLogged: a server that quotes the AUTH PLAIN
// response in its 535 must not get the password into the logs or into the
// recipients' last error (shown by `outbox queue ls`): the base64 of the
// response is the password in all but name.
func TestAuthEchoNotLogged(t *testing.T) {
	addr := echoAuthServer(t)
	host, portStr, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	const user, pass = "me@example.com", "s3cret-Pa55"
	s := newTarget(t, SMTPConfig{
		SMTP:           settings.SMTP{Name: "echo", Host: host, Port: port, TLS: "none", Username: user, Auth: "plain", ConnectTimeout: 5 * time.Second},
		Hostname:       "client.test",
		Password:       staticSecret(pass),
		CommandTimeout: 5 * time.Second,
		Logger:         testLogger(&logs),
	})
	out := s.Deliver(context.Background(), envelope(testMessage, "b@example.net"))
	if out.Results[0].Class != Deferred {
		t.Fatalf("result %+v, want deferred", out.Results[0])
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	for what, text := range map[string]string{"result": out.Results[0].Message, "logs": logs.String()} {
		if strings.Contains(text, ir) || strings.Contains(text, pass) {
			t.Errorf("%s holds the credentials: %s", what, text)
		}
	}
}
