package sendmailshim

import (
	"errors"
	"net"
	"strconv"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/maildrop"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// dialDaemon connects to the daemon's submission socket and says EHLO,
// for -bs, which relays its client's commands one by one.
func (s *shim) dialDaemon() (*smtp.Client, error) {
	sock := s.submitSocket()
	if sock == "" {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: errors.New("no unix listener in the configuration")}
	}
	conn, err := net.DialTimeout("unix", sock, dialTimeout)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = dataTimeout
	if s.opts.Verbose {
		c.DebugWriter = s.stderr
	}
	if err := c.Hello("localhost"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// drop writes the message into the maildrop folder, where the daemon
// picks it up when it runs. why is the reason the daemon was not used.
func (s *shim) drop(env *envelope, msg *content, why error) error {
	// The daemon checks each recipient when it imports the file; check
	// them now with the same function, so that the caller still learns
	// of an unknown local name.
	for _, r := range env.rcpts {
		if res, err := s.cfg.ResolveRecipient(r); errors.Is(err, config.ErrUnknownLocal) {
			return fail(ExitNoUser, "%s: unknown local name: no entry in the aliases block of %s, and no local_catchall; nothing was sent", res.Local, s.cfgPath)
		}
	}
	if err := s.checkImport(env, msg); err != nil {
		return err
	}
	md := &maildrop.Envelope{
		From:       env.from,
		Recipients: env.rcpts,
		Notify:     env.notify,
		Ret:        env.ret,
		EnvID:      env.envID,
		BodyType:   env.body,
		SMTPUTF8:   env.needsUTF8(),
		UID:        s.uid,
		User:       s.user,
		Time:       s.now(),
	}
	name, err := maildrop.Write(s.cfg.Spool.Maildrop, md, msg.reader(s.cfg.Limits.MaxMessageSize))
	if err != nil {
		if errors.Is(err, errTooBig) {
			return fail(ExitUnavailable, "message too big: more than %d bytes (limits.max_message_size); nothing was sent", s.cfg.Limits.MaxMessageSize)
		}
		return fail(ExitTempFail, "the daemon is not running (%v) and the maildrop folder %s cannot take the message (%v); nothing was sent", why, s.cfg.Spool.Maildrop, err)
	}
	s.verbosef("daemon not running; message stored as %s in %s", name, s.cfg.Spool.Maildrop)
	return nil
}

// checkImport applies to the message as completed here, the bytes the
// maildrop file will hold, the limits the daemon applies when it imports
// the file, so that exit 0 means the daemon will take it: the number of
// recipients once aliases are expanded and the size of the header section
// once the daemon has qualified bare names in it and added its Received
// field. (max_message_size is applied while the file is written, to the
// same bytes the daemon counts.)
func (s *shim) checkImport(env *envelope, msg *content) error {
	n := 0
	for _, r := range env.rcpts {
		if res, err := s.cfg.ResolveRecipient(r); err == nil {
			n += len(res.Addrs)
		} else {
			n++
		}
	}
	if n > s.cfg.Limits.MaxRecipients {
		return fail(ExitUnavailable, "too many recipients: %d once aliases are expanded, more than limits.max_recipients (%d); nothing was sent", n, s.cfg.Limits.MaxRecipients)
	}
	qualified, _ := mailhdr.Qualify(msg.header, s.cfg.Hostname)
	size := max(len(msg.header), len(qualified)) + len("\r\n") + len(s.importReceived())
	if size > mailhdr.MaxHeaderSection {
		return fail(ExitDataErr, "the header section is too large: %d bytes with the fields added to it, more than %d; nothing was sent", size, mailhdr.MaxHeaderSection)
	}
	return nil
}

// importReceived is the Received field the daemon adds when it imports a
// maildrop file, with a queue ID of the spool's length.
func (s *shim) importReceived() string {
	return mailhdr.LocalReceived(s.cfg.Hostname, strconv.Itoa(s.uid), spool.NewID(s.now()), s.now())
}
