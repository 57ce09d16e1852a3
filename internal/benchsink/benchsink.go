// Package benchsink is the loopback SMTP server the benchmark commands
// (outbox-bench, outbox-spoolbench) relay to: it takes every message,
// discards it and counts it.
package benchsink

import (
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink counts the messages it received; with Notify set it also sends
// each arrival's time on Arrived (dropped when nobody reads it).
type Sink struct {
	Port     int
	Received atomic.Int64
	Notify   atomic.Bool
	Arrived  chan time.Time

	srv *smtp.Server
}

// Start listens on a free loopback port.
func Start() (*Sink, error) {
	s := &Sink{Arrived: make(chan time.Time, 16)}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.localhost"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 64 << 20
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server.
func (s *Sink) Close() error { return s.srv.Close() }

// NewSession is go-smtp's Backend.
func (s *Sink) NewSession(*smtp.Conn) (smtp.Session, error) { return session{s}, nil }

type session struct{ s *Sink }

func (session) Mail(string, *smtp.MailOptions) error { return nil }
func (session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (session) Reset()                               {}
func (session) Logout() error                        { return nil }
func (ss session) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.s.Received.Add(1)
	if ss.s.Notify.Load() {
		select {
		case ss.s.Arrived <- time.Now():
		default:
		}
	}
	return nil
}
