package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outbox-mta/outbox/internal/durable"
)

// Maildir delivers every message into one Maildir folder, whatever the
// recipients: the development target that captures mail instead of sending
// it.
type Maildir struct {
	name   string
	path   string
	closed atomic.Bool
}

var _ Target = (*Maildir)(nil)

// NewMaildir returns a target writing into path, creating path/tmp,
// path/new and path/cur when missing.
func NewMaildir(name, path string) (*Maildir, error) {
	if path == "" {
		return nil, fmt.Errorf("upstream %s: maildir path is empty", name)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(path, sub), 0o700); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
	}
	return &Maildir{name: name, path: path}, nil
}

// Name returns the upstream name.
func (m *Maildir) Name() string { return m.name }

// Close makes later deliveries defer.
func (m *Maildir) Close() error {
	m.closed.Store(true)
	return nil
}

// Deliver writes the message with a Return-Path and one X-Envelope-To header
// per recipient, the way a final delivery agent records the envelope.
func (m *Maildir) Deliver(ctx context.Context, env *Envelope) Outcome {
	out := Outcome{Remote: "maildir:" + m.path, Local: true, Results: make([]Result, len(env.Recipients))}
	var err error
	switch {
	case m.closed.Load():
		err = fmt.Errorf("upstream %s is closed", m.name)
	case ctx.Err() != nil:
		err = ctx.Err()
	default:
		err = m.write(env)
	}
	r := Result{Class: Sent, Message: "delivered to maildir " + m.path}
	if err != nil {
		r = Result{Class: Deferred, Message: err.Error()}
	}
	for i := range out.Results {
		out.Results[i] = r
	}
	return out
}

var maildirSeq atomic.Uint64

// uniqueName follows the Maildir convention time.pid_unique.hostname.
func uniqueName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	var rnd [6]byte
	rand.Read(rnd[:])
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d_%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(),
		maildirSeq.Add(1), hex.EncodeToString(rnd[:]), host)
}

// headerSafe keeps an envelope address from breaking out of its header line.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

func (m *Maildir) write(env *Envelope) (err error) {
	if env.Body == nil {
		return fmt.Errorf("message has no body")
	}
	body, err := env.Body()
	if err != nil {
		return fmt.Errorf("opening message body: %w", err)
	}
	defer body.Close()

	name := uniqueName()
	tmp := filepath.Join(m.path, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "Return-Path: <%s>\r\n", headerSafe(env.From))
	for _, r := range env.Recipients {
		fmt.Fprintf(&hdr, "X-Envelope-To: <%s>\r\n", headerSafe(r.Address))
	}
	if _, err = io.WriteString(f, hdr.String()); err != nil {
		return err
	}
	if _, err = io.Copy(f, body); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(m.path, "new", name)); err != nil {
		return err
	}
	// The rename is only durable once the folder itself is on disk.
	return durable.SyncDir(filepath.Join(m.path, "new"))
}
