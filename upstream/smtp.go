package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/gosmtp"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// SMTPConfig configures one SMTP upstream: its settings as relay.hcl gives
// them, and what the program supplies around them.
type SMTPConfig struct {
	settings.SMTP
	RootCAs  *x509.CertPool // if non-nil, used instead of the system roots (CAFile still added)
	Hostname string         // our EHLO name; default: the machine's host name
	// Password and Token, when nil, come from the sources the settings
	// name (PasswordFile, TokenCommand, ...); nil then means none.
	Password SecretFunc
	Token    SecretFunc // bearer token for xoauth2/oauthbearer
	// RateHistory seeds the rate limit with earlier sends (from
	// SMTP.RateHistory before a restart), so a daily cap survives one.
	RateHistory    []time.Time
	CommandTimeout time.Duration                                                     // per command, default 2m
	DataTimeout    time.Duration                                                     // body write and final reply, default 10m
	Dial           func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.Dialer
	Now            func() time.Time                                                  // nil: time.Now; drives pause and rate
	Logger         *slog.Logger                                                      // nil: slog.Default()

	// OAuth, when set, runs the OAuth2 flow itself: it provides Token, is
	// told when the server refuses a token, and its configuration
	// problems pause the upstream until its stored tokens change.
	OAuth OAuthSource
}

const (
	pauseInitial = 30 * time.Second
	pauseMax     = 10 * time.Minute
	// failuresBeforePause is how many connection set-ups in a row may fail
	// before the upstream is paused.
	failuresBeforePause = 3
	// rateMaxWait bounds how long Deliver waits for a rate-limit slot.
	rateMaxWait = time.Minute
	quitTimeout = 5 * time.Second
)

// SMTP relays mail to one SMTP server over a small pool of connections.
type SMTP struct {
	cfg     SMTPConfig
	addr    string // host:port
	log     *slog.Logger
	tlsConf *tls.Config
	sem     chan struct{}
	rate    *limiter
	stop    chan struct{}
	janitor sync.WaitGroup
	fails   failures // connection set-ups that failed, by cause

	mu          sync.Mutex
	idle        []*conn
	closed      bool
	pausedUntil time.Time
	pauseReason string
	pauseConfig bool // paused for a configuration problem (OAuth2 grant refused)
	backoff     time.Duration
	connFails   int
}

var _ Target = (*SMTP)(nil)

// NewSMTP fills in defaults, checks cfg with the rules the configuration
// applies (settings.SMTP.Check) and returns the target. It does not
// connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	name := cfg.Name
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.SMTP.Default(cfg.OAuth != nil)
	if cfg.OAuth != nil && cfg.Token == nil {
		cfg.Token = cfg.OAuth.Token
	}
	problems := cfg.SMTP.Check(settings.Credentials{Password: cfg.Password != nil, Token: cfg.Token != nil})
	if len(problems) > 0 {
		return nil, fmt.Errorf("upstream %s: %w", name, problems[0])
	}
	if cfg.Password == nil {
		cfg.Password = secretFrom("password_command", cfg.PasswordFile, cfg.PasswordEnv, cfg.PasswordCommand, cfg.Logger.With("upstream", name))
	}
	if cfg.Token == nil {
		cfg.Token = secretFrom("token_command", cfg.TokenFile, "", cfg.TokenCommand, cfg.Logger.With("upstream", name))
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
		if cfg.Hostname == "" {
			cfg.Hostname = "localhost"
		}
	}
	if strings.ContainsAny(cfg.Hostname, " \r\n\t") {
		return nil, fmt.Errorf("upstream %s: hostname %q contains white space", name, cfg.Hostname)
	}
	setDefault(&cfg.CommandTimeout, 2*time.Minute)
	setDefault(&cfg.DataTimeout, 10*time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.ConnectTimeout}
		cfg.Dial = d.DialContext
	}

	roots := cfg.RootCAs
	if roots != nil {
		roots = roots.Clone()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: ca_file: %w", name, err)
		}
		if roots == nil {
			if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
				roots = x509.NewCertPool()
			}
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream %s: ca_file %s holds no PEM certificate", name, cfg.CAFile)
		}
	}

	s := &SMTP{
		cfg:  cfg,
		addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		log:  cfg.Logger.With("upstream", name),
		tlsConf: &tls.Config{
			ServerName:         cfg.Host,
			MinVersion:         tls.VersionTLS12,
			RootCAs:            roots,
			InsecureSkipVerify: cfg.InsecureSkipVerify,
		},
		sem:  make(chan struct{}, cfg.MaxConnections),
		stop: make(chan struct{}),
	}
	if cfg.RateN > 0 {
		s.rate = newLimiter(cfg.RateN, cfg.RatePer)
		s.rate.seed(cfg.RateHistory)
	}
	if cfg.InsecureSkipVerify {
		s.log.Warn("TLS certificate verification is off for this upstream (tls_skip_verify); anyone on the path can read the mail and the password")
	}
	s.janitor.Add(1)
	go s.reapLoop()
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Name returns the upstream name.
func (s *SMTP) Name() string { return s.cfg.Name }

// Addr returns host:port of the upstream.
func (s *SMTP) Addr() string { return s.addr }

// Close quits the pooled connections. Deliveries in progress finish; their
// connections are closed instead of pooled.
func (s *SMTP) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	close(s.stop)
	s.janitor.Wait()
	var wg sync.WaitGroup
	for _, cn := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cn.quit()
		}()
	}
	wg.Wait()
	return nil
}

// Paused reports whether the upstream is paused, until when and why.
func (s *SMTP) Paused() (until time.Time, reason string, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pauseConfig && s.cfg.Now().Before(s.pausedUntil) && s.cfg.OAuth != nil && s.cfg.OAuth.Changed() {
		// `outbox oauth login` wrote new tokens: try them at once.
		s.pausedUntil, s.pauseConfig, s.backoff = time.Time{}, false, 0
		s.log.Info("upstream resumed: its OAuth2 tokens changed on disk")
	}
	if s.cfg.Now().Before(s.pausedUntil) {
		return s.pausedUntil, s.pauseReason, true
	}
	return time.Time{}, "", false
}

// pause stops deliveries for an exponentially growing time. Concurrent
// failures that arrive while already paused do not grow it further.
func (s *SMTP) pause(reason string) { s.pauseFor(reason, false) }

// pauseFor pauses; config says the cause is a configuration problem that
// retrying will not cure, so the upstream waits the longest pause at once
// (or until its OAuth2 tokens change on disk).
func (s *SMTP) pauseFor(reason string, config bool) {
	s.mu.Lock()
	now := s.cfg.Now()
	if now.Before(s.pausedUntil) {
		s.mu.Unlock()
		return
	}
	switch {
	case config:
		s.backoff = pauseMax
	case s.backoff == 0:
		s.backoff = pauseInitial
	case s.backoff < pauseMax:
		s.backoff = min(2*s.backoff, pauseMax)
	}
	s.pauseConfig = config
	s.pausedUntil = now.Add(s.backoff)
	s.pauseReason = reason
	s.connFails = 0
	until, d := s.pausedUntil, s.backoff
	s.mu.Unlock()
	s.log.Warn("upstream paused", "until", until.Format(time.TimeOnly), "for", d, "reason", reason)
}

// connFailed counts a failed connection set-up and pauses after several in
// a row.
func (s *SMTP) connFailed(reason string) {
	s.mu.Lock()
	s.connFails++
	n := s.connFails
	s.mu.Unlock()
	if n >= failuresBeforePause {
		s.pause(fmt.Sprintf("%d connection failures in a row, last: %s", n, reason))
	}
}

// healthy resets the failure count and the backoff after a delivery that
// reached the server's verdict.
func (s *SMTP) healthy() {
	s.mu.Lock()
	s.connFails = 0
	s.backoff = 0
	s.mu.Unlock()
}

func (s *SMTP) pausedResult() (Result, bool) {
	until, reason, ok := s.Paused()
	if !ok {
		return Result{}, false
	}
	return Result{Class: Deferred, Message: fmt.Sprintf("upstream %s paused until %s after: %s",
		s.cfg.Name, until.Format(time.TimeOnly), reason)}, true
}

// Deliver relays env and returns one Result per recipient.
func (s *SMTP) Deliver(ctx context.Context, env *Envelope) Outcome {
	spent := false // whether the upstream took the body (see txnStatus.spent)
	out := Outcome{Remote: s.cfg.Host, Port: s.cfg.Port, Results: make([]Result, len(env.Recipients))}
	all := func(r Result) Outcome {
		for i := range out.Results {
			out.Results[i] = r
		}
		return out
	}
	if len(env.Recipients) == 0 {
		return out
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return all(Result{Class: Deferred, Message: fmt.Sprintf("upstream %s is shut down", s.cfg.Name)})
	}
	if r, ok := s.pausedResult(); ok {
		return all(r)
	}
	if env.Body == nil {
		return all(Result{Class: Deferred, Message: "message has no body"})
	}
	if s.rate != nil {
		slot, err := s.rate.wait(ctx, s.cfg.Now)
		if err != nil {
			return all(Result{Class: Deferred, Message: fmt.Sprintf("rate limit %d per %v reached for upstream %s",
				s.cfg.RateN, s.cfg.RatePer, s.cfg.Name)})
		}
		// Only a transaction that reached the body spends the slot: a
		// connection that fails or recipients all refused are nothing the
		// provider counts against the quota.
		defer func() {
			if !spent {
				s.rate.release(slot)
			}
		}()
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return all(Result{Class: Deferred, Message: "no free connection to upstream " + s.cfg.Name + ": " + ctx.Err().Error()})
	}
	defer func() { <-s.sem }()

	for attempt := 0; ; attempt++ {
		cn, reused, err := s.get(ctx, nil)
		if err != nil {
			all(temporary(err))
			s.logHints(out)
			return out
		}
		st := s.transact(ctx, cn, env, out.Results)
		if st.retry && reused && attempt == 0 {
			// A pooled connection may have been closed by the server
			// while idle; that says nothing about the message.
			s.log.Debug("pooled connection went stale, reconnecting", "error", st.reason)
			cn.close()
			clear(out.Results)
			continue
		}
		spent = st.spent
		s.put(ctx, cn, st)
		switch {
		case st.pause != "":
			s.pause(st.pause)
		case !st.broken:
			s.healthy()
		}
		s.logHints(out)
		return out
	}
}

// txnStatus is what a transaction left behind on its connection.
type txnStatus struct {
	broken    bool   // connection unusable
	needReset bool   // a transaction is open and must be reset
	retry     bool   // failed before anything was decided; a fresh connection may do better
	pause     string // the server asked us to go away (421)
	reason    string
	// spent: the server accepted DATA (354, so at least one recipient)
	// and the body was sent. Such a transaction counts against a rate
	// limit whatever the final reply: providers count what reached them.
	spent bool
}

// transact runs one mail transaction on cn and fills res.
func (s *SMTP) transact(ctx context.Context, cn *conn, env *Envelope, res []Result) (st txnStatus) {
	stop := context.AfterFunc(ctx, func() { cn.raw.Close() })
	defer stop()
	c := cn.c
	fill := func(idx []int, r Result) {
		for _, i := range idx {
			res[i] = r
		}
	}
	allIdx := make([]int, len(res))
	for i := range allIdx {
		allIdx[i] = i
	}
	// connLost handles an error after which the connection is gone or
	// must be dropped: every recipient not yet decided is deferred.
	connLost := func(idx []int, err error) {
		r := classify(err)
		if r.Class == Failed || r.Code == 421 || r.Code == 0 {
			r.Class = Deferred
		}
		if ctx.Err() != nil && r.Code == 0 {
			r.Message = "delivery interrupted: " + ctx.Err().Error()
		}
		fill(idx, r)
		st.broken = true
		st.reason = r.Message
		if r.Code == 421 {
			st.pause = fmt.Sprintf("421 %s", r.Message)
		}
	}

	if cn.needHello {
		// go-smtp forgets the EHLO state after RSET; greet again so the
		// extension checks below reflect this session.
		if err := c.Hello(s.cfg.Hostname); err != nil {
			connLost(allIdx, err)
			st.retry = true
			return st
		}
		cn.needHello = false
	}

	out, ok := s.prepare(c, env, res)
	if !ok {
		return st
	}
	// From here on, only the recipients the server may receive are in play.
	allIdx = out.sendable
	data, done, err := out.open(env)
	if err != nil {
		fill(allIdx, Result{Class: Deferred, Message: "opening message body: " + err.Error()})
		return st
	}
	defer done()

	opts := &smtp.MailOptions{Size: out.size, UTF8: out.utf8}
	if ok, _ := c.Extension("DSN"); ok {
		switch r := smtp.DSNReturn(strings.ToUpper(env.Ret)); r {
		case smtp.DSNReturnFull, smtp.DSNReturnHeaders:
			opts.Return = r
		}
		if printableASCII(env.EnvID) {
			opts.EnvelopeID = env.EnvID
		}
	}
	if err := c.Mail(out.from, opts); err != nil {
		if connGone(err) {
			connLost(allIdx, err)
			st.retry = true
			return st
		}
		fill(allIdx, classify(err))
		st.needReset = true
		return st
	}

	var accepted []int
	for k, i := range allIdx {
		err := c.Rcpt(out.rcpts[i], rcptOptions(env.Recipients[i]))
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		if connGone(err) {
			connLost(append(accepted, allIdx[k:]...), err)
			return st
		}
		res[i] = rcptResult(err)
	}
	if len(accepted) == 0 {
		st.needReset = true
		return st
	}

	w, err := c.Data()
	if err != nil {
		if connGone(err) {
			connLost(accepted, err)
			return st
		}
		fill(accepted, classify(err))
		st.needReset = true
		return st
	}
	st.spent = true
	// go-smtp puts no deadline on the body write.
	cn.raw.SetDeadline(time.Now().Add(s.cfg.DataTimeout))
	lw := newCRLFWriter(w)
	_, err = io.Copy(lw, data)
	if err == nil {
		err = lw.Close()
	}
	if err != nil {
		// Never end the DATA with a dot after a short write: that would
		// send a truncated message. Drop the connection instead.
		connLost(accepted, fmt.Errorf("sending message to %s: %w", s.addr, err))
		return st
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		if connGone(err) {
			connLost(accepted, err)
			return st
		}
		fill(accepted, classify(err))
		return st
	}
	se := gosmtp.ReplyError(250, resp.StatusText)
	fill(accepted, Result{Class: Sent, Code: 250, Enhanced: enhanced(se.EnhancedCode), Message: se.Message})
	s.log.Debug("message relayed", "from", env.From, "recipients", len(accepted), "reply", resp.StatusText)
	return st
}

// rcptResult classifies a reply to RCPT. 552 there is temporary: RFC 5321
// §4.5.3.1.10 asks clients to treat it as 452 (too many recipients), as
// some servers still send it when a transaction is full.
func rcptResult(err error) Result {
	r := classify(err)
	if r.Code == 552 {
		r.Class, r.Code = Deferred, 452
		if strings.HasPrefix(r.Enhanced, "5.") {
			r.Enhanced = "4." + r.Enhanced[2:]
		}
	}
	return r
}

func rcptOptions(r Rcpt) *smtp.RcptOptions {
	opts := &smtp.RcptOptions{}
	never := false
	for _, n := range r.Notify {
		v := smtp.DSNNotify(strings.ToUpper(strings.TrimSpace(string(n))))
		switch v {
		case smtp.DSNNotifyNever:
			never = true
		case smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed:
			if !slices.Contains(opts.Notify, v) {
				opts.Notify = append(opts.Notify, v)
			}
		}
	}
	if never {
		// NEVER excludes the others (RFC 3461); it is the safer reading.
		opts.Notify = []smtp.DSNNotify{smtp.DSNNotifyNever}
	}
	if typ, addr, ok := strings.Cut(r.ORCPT, ";"); ok && addr != "" {
		switch strings.ToUpper(strings.TrimSpace(typ)) {
		case "RFC822":
			if printableASCII(addr) {
				opts.OriginalRecipientType = smtp.DSNAddressTypeRFC822
				opts.OriginalRecipient = addr
			}
		case "UTF-8":
			opts.OriginalRecipientType = smtp.DSNAddressTypeUTF8
			opts.OriginalRecipient = addr
		}
	}
	return opts
}

func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// get returns a pooled connection or a new one. A failed connection
// set-up counts towards pausing the upstream.
func (s *SMTP) get(ctx context.Context, probe *ProbeReport) (cn *conn, reused bool, err error) {
	if probe == nil {
		if cn := s.takeIdle(); cn != nil {
			return cn, true, nil
		}
	}
	cn, err = s.connect(ctx, probe)
	if err != nil {
		s.fails.count(err)
		if ctx.Err() == nil {
			if replyCode(err) == 421 {
				s.pause(err.Error())
			} else if isConfigProblem(err) {
				s.pauseFor(err.Error(), true)
			} else {
				s.connFailed(err.Error())
			}
		}
		return nil, false, err
	}
	return cn, false, nil
}

func (s *SMTP) takeIdle() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for len(s.idle) > 0 {
		cn := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if now.Sub(cn.lastUsed) < s.cfg.IdleTimeout {
			return cn
		}
		go cn.quit()
	}
	return nil
}

// put returns cn to the pool after a transaction, or closes it.
func (s *SMTP) put(ctx context.Context, cn *conn, st txnStatus) {
	if st.broken || ctx.Err() != nil {
		cn.close()
		return
	}
	if st.needReset {
		if err := cn.c.Reset(); err != nil {
			cn.close()
			return
		}
		cn.needHello = true
	}
	cn.lastUsed = s.cfg.Now()
	s.mu.Lock()
	if s.closed || len(s.idle) >= s.cfg.MaxConnections {
		s.mu.Unlock()
		cn.quit()
		return
	}
	s.idle = append(s.idle, cn)
	s.mu.Unlock()
}

// reapLoop closes pooled connections idle for longer than IdleTimeout, so
// we do not sit on sockets the server has long given up on.
func (s *SMTP) reapLoop() {
	defer s.janitor.Done()
	t := time.NewTicker(max(s.cfg.IdleTimeout/2, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := s.cfg.Now()
		var stale []*conn
		keep := s.idle[:0]
		for _, cn := range s.idle {
			if now.Sub(cn.lastUsed) >= s.cfg.IdleTimeout {
				stale = append(stale, cn)
			} else {
				keep = append(keep, cn)
			}
		}
		clear(s.idle[len(keep):])
		s.idle = keep
		s.mu.Unlock()
		for _, cn := range stale {
			cn.quit()
		}
	}
}

var errNoStartTLS = errors.New("STARTTLS not offered")

// RateHistory returns the times of the sends the rate limit still counts,
// oldest first; nil without a rate limit. Pass them as
// SMTPConfig.RateHistory after a restart.
func (s *SMTP) RateHistory() []time.Time {
	if s.rate == nil {
		return nil
	}
	return s.rate.history()
}
