// Package adminapi is the contract between the daemon's admin socket and
// the commands that talk to it (outbox queue …, mailq, sendmail -q): JSON
// over HTTP on a unix socket. When the daemon is not running, EachQueued
// reads the spool file directly.
package adminapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
)

// Message is one queued message as `outbox queue ls --json` prints it.
type Message struct {
	ID          string      `json:"id"`
	From        string      `json:"from"`
	Size        int64       `json:"size"`
	Arrived     time.Time   `json:"arrived"`
	Attempts    int         `json:"attempts"`
	NextAttempt time.Time   `json:"next_attempt"`
	Held        bool        `json:"held"`
	Recipients  []Recipient `json:"recipients"`
}

// Recipient is one recipient's state.
type Recipient struct {
	Address   string `json:"address"`
	Status    string `json:"status"` // pending | sent | failed
	LastError string `json:"last_error"`
}

// FromSpool converts a spool envelope to its listing form.
func FromSpool(m *spool.Message) Message {
	out := Message{
		ID: m.ID, From: m.From, Size: m.Size, Arrived: m.Arrived.UTC().Truncate(time.Second),
		Attempts: m.Attempts, NextAttempt: m.NextAttempt.UTC().Truncate(time.Second), Held: m.Held,
		Recipients: make([]Recipient, 0, len(m.Recipients)),
	}
	for _, r := range m.Recipients {
		out.Recipients = append(out.Recipients, Recipient{Address: r.Address, Status: string(r.Status), LastError: r.LastError})
	}
	return out
}

// Stats is the daemon's view of itself.
type Stats struct {
	Queued        int     `json:"queued"`
	Pending       int     `json:"pending"`  // not tried yet
	Deferred      int     `json:"deferred"` // tried, waiting for a retry
	Held          int     `json:"held"`
	Commits       uint64  `json:"commits"`
	Writes        uint64  `json:"writes"`
	BatchingRatio float64 `json:"batching_ratio"`
}

// Client talks to the admin socket. It speaks just enough HTTP/1.0 for
// this one daemon rather than importing net/http: the sendmail shim links
// this package (for mailq and sendmail -q), and net/http would cost every
// sendmail run, whatever its mode, ten more package initializers, 0.28 ms
// of start-up at best and 0.46 ms in the median (21 runs each, as
// GODEBUG=inittrace=1 reports them), and 1.4 MB of binary. A net/http
// client bought nothing measurable for `outbox queue ls` either, whose
// binary links net/http anyway: 45 against 44 ms of CPU for the whole
// process (medians of 80 runs each, taken in turn, listing 20 messages),
// with 0.7 MiB more peak memory.
type Client struct {
	socket string
}

// NewClient returns a client for the admin socket at path.
func NewClient(socket string) *Client {
	return &Client{socket: socket}
}

// ErrNotRunning means nothing answers on the admin socket.
var ErrNotRunning = errors.New("the outbox daemon is not running (nothing answers on the admin socket)")

// ErrForbidden matches (errors.Is) the daemon's refusal of a request for
// the caller's uid, and a spool file the caller may not read.
var ErrForbidden = errors.New("permission denied")

// Error is a refusal from the daemon: its HTTP status and its message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is makes a 403 match ErrForbidden.
func (e *Error) Is(target error) bool { return target == ErrForbidden && e.Status == 403 }

// idleTimeout bounds each wait for the daemon while a reply streams in:
// a long listing may take minutes, but never this long without a byte.
const idleTimeout = 30 * time.Second

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	return c.stream(ctx, method, path, q, func(body io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(body, 1<<20))
		if err != nil {
			return fmt.Errorf("admin socket %s: %w", c.socket, err)
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(b, out)
	})
}

// deadlineReader bounds each read: by the context's deadline if it has
// one, else idleTimeout from the read's start, so a context without a
// deadline lets a long listing run as long as bytes keep coming.
type deadlineReader struct {
	conn net.Conn
	ctx  context.Context
}

func (r deadlineReader) Read(p []byte) (int, error) {
	dl, ok := r.ctx.Deadline()
	if !ok {
		dl = time.Now().Add(idleTimeout)
	}
	r.conn.SetReadDeadline(dl)
	return r.conn.Read(p)
}

// stream sends one request and hands a 200 reply's body to read as it
// arrives; any other status is an *Error.
func (c *Client) stream(ctx context.Context, method, path string, q url.Values, read func(body io.Reader) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return ErrNotRunning
		}
		return fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	target := path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.0\r\nHost: outbox\r\nContent-Length: 0\r\n\r\n", method, target); err != nil {
		return fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	tp := textproto.NewReader(bufio.NewReaderSize(deadlineReader{conn, ctx}, 64<<10))
	status, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	proto, rest, _ := strings.Cut(status, " ")
	code, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/") || len(code) != 3 {
		return fmt.Errorf("admin socket %s: not an outbox admin socket (answered %q)", c.socket, status)
	}
	if _, err := tp.ReadMIMEHeader(); err != nil {
		return fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	// HTTP/1.0: the body runs to the end of the connection.
	if code != "200" {
		body, err := io.ReadAll(io.LimitReader(tp.R, 64<<10))
		if err != nil {
			return fmt.Errorf("admin socket %s: %w", c.socket, err)
		}
		n, _ := strconv.Atoi(code)
		return &Error{Status: n, Message: strings.TrimSpace(string(body))}
	}
	err = read(tp.R)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("admin socket %s: %w", c.socket, ctx.Err())
	}
	return err
}

// Queue lists the whole queue in memory; QueueEach streams it.
func (c *Client) Queue(ctx context.Context) ([]Message, error) {
	out := []Message{}
	err := c.QueueEach(ctx, 0, func(m Message) error { out = append(out, m); return nil })
	return out, err
}

// QueueEach calls fn for each queued message as the daemon streams the
// listing, oldest first; limit > 0 asks for the first limit messages only.
// Memory stays one message whatever the queue's length. An error from fn
// stops the listing and is returned.
func (c *Client) QueueEach(ctx context.Context, limit int, fn func(Message) error) error {
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	return c.stream(ctx, "GET", "/queue", q, func(body io.Reader) error {
		if err := DecodeList(body, fn); err != nil {
			return fmt.Errorf("admin socket %s: listing: %w", c.socket, err)
		}
		return nil
	})
}

// DecodeList reads a JSON array of messages one element at a time. A
// listing cut short (the daemon failed while writing it) is an error.
func DecodeList(r io.Reader, fn func(Message) error) error {
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil {
		return err
	} else if t != json.Delim('[') {
		return fmt.Errorf("not a JSON array (starts with %v)", t)
	}
	for dec.More() {
		var m Message
		if err := dec.Decode(&m); err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Show returns a readable dump of one message: envelope and headers.
func (c *Client) Show(ctx context.Context, id string) (string, error) {
	var out struct {
		Text string `json:"text"`
	}
	err := c.do(ctx, "GET", "/show", url.Values{"id": {id}}, &out)
	return out.Text, err
}

// Flush makes every queued message due now.
func (c *Client) Flush(ctx context.Context) (int, error) {
	var out struct {
		Scheduled int `json:"scheduled"`
	}
	err := c.do(ctx, "POST", "/flush", nil, &out)
	return out.Scheduled, err
}

// Act runs hold, release or delete on one message.
func (c *Client) Act(ctx context.Context, action, id string) error {
	return c.do(ctx, "POST", "/"+action, url.Values{"id": {id}}, nil)
}

// Stats returns the daemon's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var out Stats
	err := c.do(ctx, "GET", "/stats", nil, &out)
	return out, err
}

// errLimit stops a walk at its limit.
var errLimit = errors.New("limit reached")

// EachQueued calls fn for each queued message, oldest first, through the
// daemon if it runs, else from the spool file; limit > 0 stops after that
// many. A missing spool file is an empty queue. fn is called as the
// listing arrives: whatever fn has printed stays printed if the listing
// then fails.
func EachQueued(ctx context.Context, cfg *config.Config, limit int, fn func(Message) error) error {
	err := NewClient(cfg.Admin.Socket).QueueEach(ctx, limit, fn)
	if !errors.Is(err, ErrNotRunning) {
		return err
	}
	s, err := OpenSpool(cfg, true)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer s.Close()
	n := 0
	err = s.Range("", func(m *spool.Message) error {
		if limit > 0 && n >= limit {
			return errLimit
		}
		n++
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(FromSpool(m))
	})
	if err == errLimit {
		err = nil
	}
	return err
}

// OpenSpool opens the spool file for a command run while the daemon is
// down. A spool the caller may not read (its folder is for the outbox
// user) is SpoolDenied; read-only, a missing file wraps os.ErrNotExist.
func OpenSpool(cfg *config.Config, readOnly bool) (*spool.Spool, error) {
	if readOnly {
		if _, err := os.Stat(cfg.Spool.Path); errors.Is(err, os.ErrPermission) {
			return nil, SpoolDenied(cfg.Spool.Path)
		} else if err != nil {
			return nil, fmt.Errorf("no spool at %s: %w", cfg.Spool.Path, err)
		}
	}
	s, err := spool.Open(cfg.Spool.Path, spool.Options{ReadOnly: readOnly, Timeout: 2 * time.Second})
	if errors.Is(err, os.ErrPermission) {
		return nil, SpoolDenied(cfg.Spool.Path)
	}
	return s, err
}

// SpoolDenied is the error for a spool file the caller may not read: the
// daemon is down, so the queue can only be read from the file, which
// (like its folder) is for root and the outbox user alone.
func SpoolDenied(path string) error {
	return fmt.Errorf("%w: the daemon is not running, and its spool %s is readable only by root and the outbox user; start the daemon (systemctl start outbox) or run this as root", ErrForbidden, path)
}

// WriteList streams a listing as a JSON array to w, one element encoded
// at a time: each calls its argument once per message, in order. It is
// the daemon's side of QueueEach.
func WriteList(w io.Writer, each func(fn func(Message) error) error) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	first := true
	err := each(func(m Message) error {
		if !first {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		first = false
		return enc.Encode(m)
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "]\n")
	return err
}
