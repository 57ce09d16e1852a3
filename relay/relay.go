// Package relay is the Outbox daemon: the inbound SMTP listeners and their
// policy, the scheduler that relays spooled mail upstream, delivery status
// notifications, the maildrop importer and the admin API.
package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/gosmtp"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
	"github.com/outbox-mta/outbox/upstream/oauth"
)

// Options are test hooks and tuning knobs for New.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Targets replaces the upstreams built from the configuration (tests).
	Targets map[string]upstream.Target
	// MaildropInterval is how often the maildrop folder is checked between
	// notifications; 0 means 5 seconds.
	MaildropInterval time.Duration
	// Ready, if set, is called once every listener is accepting.
	Ready func()
	// Level, if set, is the logger's level; Reload sets it from log.level.
	Level *slog.LevelVar
	// Version is the daemon's version, for outbox status.
	Version string
}

// Relay is a running daemon.
type Relay struct {
	cfg     *config.Config
	log     *slog.Logger
	opts    Options
	now     func() time.Time
	spool   *spool.Spool
	in      *Inbound
	sched   *Scheduler
	metrics *metrics
	notify  *notifier
	started time.Time
	// live is the configuration in force with its policy, router and
	// targets; r.cfg stays the one the daemon started with, whose
	// listen, spool and admin settings only a restart changes.
	live *live
	// reloadMu serialises reloads; stopping refuses them once shutdown
	// has begun.
	reloadMu sync.Mutex
	stopping bool
	// savedRates is the rate-limit history last saved, per upstream.
	savedRates map[string][]byte

	servers   []*smtp.Server
	listeners []*listener
	sendmail  *sendmailServer // nil without a unix listener
	admin     *adminServer
}

// New opens the spool and the sockets and builds the upstreams. Nothing
// runs until Run.
func New(cfg *config.Config, log *slog.Logger, opts Options) (r *Relay, err error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r = &Relay{cfg: cfg, log: log, opts: opts, now: opts.Now, savedRates: map[string][]byte{}, started: opts.Now()}
	// The error returns below set r to nil; close what was opened through
	// a copy that they do not touch.
	rl := r
	defer func() {
		if err != nil {
			rl.closeAll()
		}
	}()
	if err := os.MkdirAll(filepath.Dir(cfg.Spool.Path), 0o750); err != nil {
		return nil, fmt.Errorf("spool folder: %w", err)
	}
	r.spool, err = spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		return nil, err
	}
	targets := opts.Targets
	if targets == nil {
		targets, err = buildTargets(cfg, log, r.loadRateHistory)
		if err != nil {
			return nil, err
		}
	}
	r.metrics = newMetrics(r.spool, func() map[string]upstream.Target { return r.current().router.targets })
	router := NewRouter(cfg, targets)
	policy := NewPolicy(cfg)
	r.live = newLive(&snapshot{cfg: cfg, policy: policy, router: router})
	r.sched = NewScheduler(r.spool, r.live, log, r.now)
	r.sched.metrics = r.metrics
	r.notify = newNotifier(func() config.Notify { return r.current().cfg.Notify }, func() string { return r.current().cfg.Hostname }, log, r.now)
	r.sched.notify = r.notify
	r.in = &Inbound{store: r.spool, log: log, kick: r.sched.Kick, now: r.now, metrics: r.metrics, live: r.live}

	inherited := inheritedSockets()
	defer inherited.closeRest(log)
	for _, lc := range cfg.Listen {
		nl, err := inherited.take(lc)
		if err != nil {
			return nil, err
		}
		if nl != nil {
			log.Info("using the socket systemd passed", "address", lc.Address)
		} else if nl, err = listen(lc); err != nil {
			if noIPv6(lc, err) {
				log.Warn("IPv6 is off on this host; not listening on it (mail to localhost still arrives over IPv4)", "address", lc.Address)
				err = nil
				continue
			}
			return nil, err
		}
		l := newListener(nl, lc, cfg.Limits.MaxConnections, cfg.Hostname)
		r.listeners = append(r.listeners, l)
		srv, err := r.newServer(l)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, srv)
	}
	if r.sendmail, err = r.openSendmail(inherited); err != nil {
		return nil, err
	}
	r.admin, err = newAdminServer(r)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Relay) newServer(l *listener) (*smtp.Server, error) {
	// MaxMessageBytes and MaxRecipients stay 0 (EHLO then says plain
	// "SIZE"), as a reload changes them: the backend enforces both per
	// transaction from the configuration in force (session.Mail, Rcpt and
	// Data).
	sc := gosmtp.ServerConfig{Domain: r.cfg.Hostname, ReadTimeout: r.cfg.Limits.ReadTimeout,
		WriteTimeout: r.cfg.Limits.WriteTimeout, ErrorLog: slogAdapter{r.log}}
	if l.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(l.cfg.TLSCert, l.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("listener %s: loading tls_cert/tls_key: %w", l.cfg.Address, err)
		}
		sc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return gosmtp.NewServer(&backend{in: r.in, l: l}, sc), nil
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Debug(fmt.Sprintln(v...)) }

// buildTargets creates a delivery target per upstream block; history gives
// an upstream's earlier sends for its rate limit.
func buildTargets(cfg *config.Config, log *slog.Logger, history func(name string) []time.Time) (map[string]upstream.Target, error) {
	targets := map[string]upstream.Target{}
	for _, u := range cfg.Upstreams {
		t, err := buildTarget(cfg, u, log, history(u.Name))
		if err != nil {
			for _, t := range targets {
				t.Close()
			}
			return nil, err
		}
		targets[u.Name] = t
	}
	return targets, nil
}

// BuildTarget creates the delivery target for one upstream block.
func BuildTarget(cfg *config.Config, u *config.Upstream, log *slog.Logger) (upstream.Target, error) {
	return buildTarget(cfg, u, log, nil)
}

func buildTarget(cfg *config.Config, u *config.Upstream, log *slog.Logger, history []time.Time) (upstream.Target, error) {
	if u.Type == "maildir" {
		return upstream.NewMaildir(u.Name, u.Path)
	}
	sc := upstream.SMTPConfig{
		SMTP: u.SMTP, Hostname: cfg.Hostname, RateHistory: history,
		Logger: log, // NewSMTP adds the "upstream" attribute itself
	}
	if u.OAuth2 != nil {
		src, err := NewOAuthSource(u, log)
		if err != nil {
			return nil, err
		}
		sc.OAuth = src
	}
	return upstream.NewSMTP(sc)
}

// NewOAuthSource builds the token source of an upstream with an oauth2
// block (the daemon's targets, `outbox test-upstream`, `outbox oauth`).
func NewOAuthSource(u *config.Upstream, log *slog.Logger) (*oauth.Source, error) {
	o := u.OAuth2
	oc := oauth.Config{Name: u.Name, Flow: o.Flow, TokenURL: o.TokenURL, AuthURL: o.AuthURL, DeviceURL: o.DeviceURL,
		ClientID: o.ClientID, Scopes: o.Scopes, KeyFile: o.KeyFile, Subject: o.Subject, TokenFile: o.TokenFile, Logger: log,
		RefreshWithScope: o.RefreshWithScope}
	switch {
	case o.ClientSecretFile != "":
		oc.ClientSecret = upstream.SecretFromFile(o.ClientSecretFile, log)
	case o.ClientSecretEnv != "":
		oc.ClientSecret = upstream.SecretFromEnv(o.ClientSecretEnv)
	}
	if o.Flow == oauth.RefreshToken && o.Subject == "" {
		oc.Subject = u.Username // the login hint
	}
	return oauth.New(oc)
}

// Spool exposes the open spool (tests and admin).
func (r *Relay) Spool() *spool.Spool { return r.spool }

// Run serves until ctx ends, then shuts down: listeners close, idle
// sessions are closed, sessions inside DATA finish their commit and reply,
// in-flight deliveries finish (or are cancelled after a grace period and
// stay queued), and the spool is closed.
func (r *Relay) Run(ctx context.Context) error {
	errc := make(chan error, len(r.servers)+3)
	for i, srv := range r.servers {
		go func(srv *smtp.Server, l *listener) {
			if err := srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				errc <- fmt.Errorf("listener %s: %w", l.cfg.Address, err)
			}
		}(srv, r.listeners[i])
	}
	if r.sendmail != nil {
		go func() {
			if err := r.sendmail.serve(); err != nil {
				errc <- err
			}
		}()
	}
	go func() {
		if err := r.admin.serve(); err != nil {
			errc <- err
		}
	}()
	schedCtx, stopSched := context.WithCancel(context.Background())
	schedDone := make(chan struct{})
	go func() { r.sched.Run(schedCtx); close(schedDone) }()
	importCtx, stopImport := context.WithCancel(context.Background())
	importDone := make(chan struct{})
	go func() { r.runMaildrop(importCtx); close(importDone) }()
	rateDone := make(chan struct{})
	go func() { r.runRateSaver(importCtx); close(rateDone) }()
	notifyDone := r.runNotify(importCtx)

	for _, l := range r.listeners {
		r.log.Info("listening", "address", l.cfg.Address)
	}
	if r.sendmail != nil {
		r.log.Info("listening", "address", r.sendmail.addr, "protocol", "sendmail")
	}
	r.log.Info("outbox started", "hostname", r.cfg.Hostname, "spool", r.cfg.Spool.Path, "upstreams", len(r.cfg.Upstreams))
	if r.opts.Ready != nil {
		r.opts.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		r.log.Error("stopping", "err", runErr)
	case runErr = <-r.spool.Damaged():
		r.log.Error("stopping: the spool file is damaged", "err", runErr)
	}
	r.log.Info("shutting down")
	r.reloadMu.Lock()
	r.stopping = true
	r.reloadMu.Unlock()

	// Stop accepting, close idle sessions, let DATA in progress finish.
	var wg sync.WaitGroup
	for i, srv := range r.servers {
		wg.Add(1)
		go func(srv *smtp.Server, l *listener) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(context.Background(), r.cfg.Limits.ReadTimeout+5*time.Second)
			defer cancel()
			go func() {
				// Close the listener first, then the idle sessions.
				l.Close()
				l.drain()
			}()
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				srv.Close()
			}
		}(srv, r.listeners[i])
	}
	if r.sendmail != nil {
		// Calls past GO finish, within the same time as DATA.
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(context.Background(), r.cfg.Limits.ReadTimeout+5*time.Second)
			defer cancel()
			r.sendmail.shutdown(sctx)
		}()
	}
	wg.Wait()
	stopImport()
	<-importDone
	<-rateDone
	<-notifyDone
	stopSched()
	<-schedDone
	r.saveRateHistory()
	r.closeAll()
	r.log.Info("stopped")
	return runErr
}

func (r *Relay) closeAll() {
	// The admin socket closes first, so that no command reaches a target
	// or the spool while they close.
	if r.admin != nil {
		r.admin.close()
	}
	if r.live != nil {
		// Targets of earlier snapshots were closed once their last
		// delivery ended; the scheduler has stopped by now.
		for _, t := range r.current().router.targets {
			t.Close()
		}
	}
	for _, l := range r.listeners {
		l.Close()
	}
	if r.sendmail != nil {
		r.sendmail.ln.Close()
	}
	if r.spool != nil {
		r.spool.Close()
	}
}

// bufioReader wraps r for header reading.
func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// newMail recycles the readers that new mail (SMTP DATA, maildrop files)
// comes in through: each is done with once its message is in the spool.
var newMail = sync.Pool{New: func() any { return bufioReader(nil) }}

// getReader is bufioReader from the pool; give it back with putReader once
// nothing reads from it any more.
func getReader(r io.Reader) *bufio.Reader {
	br := newMail.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil) // drop the reference to the message
	newMail.Put(br)
}

var _ net.Listener = (*listener)(nil)
