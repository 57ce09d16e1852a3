package sendmailshim

import (
	"errors"
	"io"
	"os"
	"time"

	"github.com/outbox-mta/outbox/config"
)

// Submit hands a complete message to the daemon over its unix socket, or
// to the maildrop folder while the daemon is down, exactly as the sendmail
// command does, for Outbox's other clients (outbox send, the email
// package). from and rcpts are the envelope, as full addresses; msg is the
// whole message, header included, which Submit does not complete or
// change. cfgPath names cfg's file in messages.
//
// Submit returns nil only once the daemon or the maildrop folder has the
// message durably; otherwise ExitStatus tells the failure's sysexits.h
// status: 75 (EX_TEMPFAIL) means nothing was stored and trying again later
// can help.
func Submit(cfg *config.Config, cfgPath, from string, rcpts []string, msg io.Reader) error {
	s := &shim{
		prog:    "outbox",
		opts:    &Options{},
		stderr:  io.Discard,
		getenv:  os.Getenv,
		uid:     os.Getuid(),
		now:     time.Now,
		cfgPath: cfgPath,
		cfg:     cfg,
	}
	if len(rcpts) == 0 {
		return fail(ExitUsage, "no recipients; nothing was sent")
	}
	for _, r := range rcpts {
		if !config.ValidAddress(r) {
			return fail(ExitDataErr, "%q is not a valid recipient address; nothing was sent", r)
		}
	}
	if from != "" && !config.ValidAddress(from) {
		return fail(ExitDataErr, "%q is not a valid sender address; nothing was sent", from)
	}
	// The maildrop file records the submitting user, as the daemon's
	// Received field does for the socket.
	if err := s.identify(); err != nil {
		return err
	}
	c, err := readContent(msg)
	if err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			return fail(ExitDataErr, "%v", err)
		}
		return fail(ExitTempFail, "cannot read the message: %v; nothing was sent", err)
	}
	return s.submit(&envelope{from: from, rcpts: dedupe(append([]string(nil), rcpts...))}, c)
}

// ExitStatus returns the sysexits.h status of an error from Submit: 0 for
// nil, 70 (EX_SOFTWARE) for an error that carries none.
func ExitStatus(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitSoftware
}

// Login returns the invoking user's login name as the sendmail command
// names it (the password database, else LOGNAME, else USER), so that
// `outbox send` and sendmail give mail without -f the same sender. An
// error is a sendmail exit status (75 when no name is found).
func Login() (string, error) {
	s := &shim{getenv: os.Getenv, uid: os.Getuid()}
	if err := s.identify(); err != nil {
		return "", err
	}
	return s.user, nil
}
