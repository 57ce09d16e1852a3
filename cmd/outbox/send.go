package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"strings"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/email"
	"github.com/outbox-mta/outbox/sendmailshim"
)

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Exit statuses of outbox send beyond the daemon's own, from sysexits.h.
const (
	exitDataErr = 65 // EX_DATAERR: the message cannot be built
	exitNoInput = 66 // EX_NOINPUT: a --text, --html, --attach or --inline file cannot be read
)

// cmdSend composes a message from its flags with the email package, or
// takes a whole message on stdin (`outbox send RCPT… < message`), and
// submits it as the sendmail command does: to the daemon's unix socket, or
// into the maildrop folder while the daemon is down. Its exit statuses are
// the sendmail command's.
func cmdSend(a *app, args []string) int {
	fs := a.flags("send")
	var to, cc, bcc, attach, inline, headers, tags listFlag
	from := fs.String("from", "", "sender, `ADDR` or \"Name <ADDR>\" (default: you@hostname)")
	subject := fs.String("subject", "", "the Subject, any UTF-8 text")
	text := fs.String("text", "", "read the plain text body from `FILE` (- for stdin)")
	html := fs.String("html", "", "read the HTML body from `FILE` (- for stdin)")
	fs.Var(&to, "to", "a To recipient (repeatable)")
	fs.Var(&cc, "cc", "a Cc recipient (repeatable)")
	fs.Var(&bcc, "bcc", "a Bcc recipient: in the envelope, never in the header (repeatable)")
	fs.Var(&attach, "attach", "attach `FILE` (repeatable)")
	fs.Var(&inline, "inline", "an image `FILE` the HTML shows as <img src=\"cid:BASENAME\"> (repeatable)")
	fs.Var(&headers, "header", "an extra header field, \"`Name: value`\" (repeatable)")
	fs.Var(&tags, "tag", "a tag for Outbox's logs and metrics, `key=value` (repeatable)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	compose := len(to)+len(cc)+len(bcc) > 0
	if compose && fs.NArg() > 0 {
		fmt.Fprintln(a.stderr, "outbox send: give recipients either with --to, --cc and --bcc or as arguments, not both")
		return exitUsage
	}
	if !compose && fs.NArg() == 0 {
		fmt.Fprintln(a.stderr, "outbox send: give at least one recipient (--to ADDR, or RCPT arguments with the message on stdin)")
		return exitUsage
	}
	bodyFlags := *text != "" || *html != "" || len(attach)+len(inline)+len(headers)+len(tags) > 0
	if !compose && bodyFlags {
		fmt.Fprintln(a.stderr, "outbox send: --text, --html, --attach, --inline, --header and --tag compose a message: name its recipients with --to, --cc or --bcc")
		return exitUsage
	}
	path := config.Locate(a.configFlag)
	o, err := email.NewOutbox(path)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox send:", err)
		return exitConfig
	}
	cfg := o.Config
	sender := *from
	if sender == "" {
		// As sendmail without -f: the invoking user at hostname, never a
		// guess (a uid the password database does not know, with no
		// LOGNAME or USER, is an error, not root).
		name, err := sendmailshim.Login()
		if err != nil {
			return a.sendResult(err)
		}
		sender = name + "@" + cfg.Hostname
	}
	if !compose && *subject == "" {
		// The old form: a whole message on stdin, sent as it is.
		rcpts, err := qualifyAll(cfg, fs.Args())
		if err != nil {
			fmt.Fprintln(a.stderr, "outbox send:", err)
			return exitUsage
		}
		env, err := mail.ParseAddress(qualify(cfg, sender))
		if err != nil {
			fmt.Fprintf(a.stderr, "outbox send: --from %q is not a mail address\n", sender)
			return exitUsage
		}
		return a.sendResult(sendmailshim.Submit(cfg, path, env.Address, addrsOf(rcpts), a.stdin))
	}
	m := &email.Message{From: qualify(cfg, sender), Subject: *subject}
	if !compose {
		// `outbox send --subject S RCPT… < body`: stdin is the text.
		to = fs.Args()
		if *text == "" {
			*text = "-"
		}
	}
	var err2 error
	if m.To, err2 = qualifyAll(cfg, to); err2 == nil {
		if m.Cc, err2 = qualifyAll(cfg, cc); err2 == nil {
			m.Bcc, err2 = qualifyAll(cfg, bcc)
		}
	}
	if err2 != nil {
		fmt.Fprintln(a.stderr, "outbox send:", err2)
		return exitUsage
	}
	if *text == "" && *html == "" && !isTerminal(a.stdin) {
		// With no body named, stdin is the text, as for mail(1); an
		// interactive terminal is not read, so that a message of
		// attachments alone does not wait for input.
		*text = "-"
	}
	if *text == "-" && *html == "-" {
		fmt.Fprintln(a.stderr, "outbox send: stdin can be --text or --html, not both")
		return exitUsage
	}
	for _, b := range []struct {
		file string
		dst  *string
	}{{*text, &m.Text}, {*html, &m.HTML}} {
		if b.file == "" {
			continue
		}
		data, err := a.readInput(b.file, cfg.Limits.MaxMessageSize)
		if err != nil {
			fmt.Fprintln(a.stderr, "outbox send:", err)
			return exitNoInput
		}
		*b.dst = string(data)
	}
	for _, list := range []struct {
		files  listFlag
		inline bool
	}{{inline, true}, {attach, false}} {
		for _, f := range list.files {
			data, err := a.readInput(f, cfg.Limits.MaxMessageSize)
			if err != nil {
				fmt.Fprintln(a.stderr, "outbox send:", err)
				return exitNoInput
			}
			att := email.Attachment{Filename: filepath.Base(f), Content: data, Inline: list.inline}
			if list.inline {
				att.ContentID = att.Filename
			}
			m.Attachments = append(m.Attachments, att)
		}
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(a.stderr, "outbox send: --header %q: give \"Name: value\"\n", h)
			return exitUsage
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	for _, t := range tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			fmt.Fprintf(a.stderr, "outbox send: --tag %q: give key=value\n", t)
			return exitUsage
		}
		if m.Metadata == nil {
			m.Metadata = map[string]string{}
		}
		m.Metadata[k] = v
	}
	return a.sendResult(o.Send(context.Background(), m))
}

// sendResult prints the outcome of a submission and returns the exit
// status: every problem of an invalid message on a line of its own.
func (a *app) sendResult(err error) int {
	var ve *email.ValidationError
	switch {
	case err == nil:
		fmt.Fprintln(a.stdout, "queued")
		return exitOK
	case errors.As(err, &ve):
		for _, p := range ve.Problems {
			fmt.Fprintln(a.stderr, "outbox send:", p)
		}
		return exitDataErr
	}
	// The daemon's own words are printed, without the "temporary
	// failure" prefix of *email.Error.
	var e *email.Error
	if errors.As(err, &e) && e.Err != nil {
		err = e.Err
	}
	fmt.Fprintln(a.stderr, "outbox send:", strings.Join(strings.Fields(err.Error()), " "))
	return sendmailshim.ExitStatus(err)
}

// readInput reads FILE, or stdin for "-", up to max bytes.
func (a *app) readInput(name string, max int64) ([]byte, error) {
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes (limits.max_message_size)", name, max)
	}
	return data, nil
}

// qualify gives a bare local name ("root") the configured hostname, as the
// sendmail command does.
func qualify(cfg *config.Config, s string) string {
	if !strings.ContainsAny(s, "@<") && config.ValidLocalName(strings.TrimSpace(s)) {
		return strings.TrimSpace(s) + "@" + cfg.Hostname
	}
	return s
}

// qualifyAll splits each argument as an address list ("a@x, B <b@y>") and
// qualifies bare local names.
func qualifyAll(cfg *config.Config, args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		if strings.ContainsAny(arg, "\r\n") {
			return nil, fmt.Errorf("%q: line break in address", arg)
		}
		list, err := mail.ParseAddressList(arg)
		if err != nil {
			// Bare local names are no addresses to net/mail.
			var parts []string
			for _, p := range strings.Split(arg, ",") {
				parts = append(parts, qualify(cfg, p))
			}
			list, err = mail.ParseAddressList(strings.Join(parts, ","))
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not a mail address: %v", arg, strings.TrimPrefix(err.Error(), "mail: "))
		}
		for _, a := range list {
			out = append(out, a.String())
		}
	}
	return out, nil
}

func addrsOf(list []string) []string {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if a, err := mail.ParseAddress(s); err == nil {
			out = append(out, a.Address)
		}
	}
	return out
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
