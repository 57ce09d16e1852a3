// Package config loads and validates relay.hcl, the one configuration file of
// Outbox. Every error is an HCL diagnostic with file:line:column and a
// sentence that names the fix.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/outbox-mta/outbox/internal/loopback"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/upstream/preset"
)

// DefaultPath is where the configuration lives when neither --config nor
// OUTBOX_CONFIG says otherwise.
const DefaultPath = "/etc/outbox/relay.hcl"

// Config is the validated configuration.
type Config struct {
	Path     string // absolute path of the file it came from
	Dir      string // its folder; relative paths resolve against it
	Hostname string

	Listen  []Listen
	Spool   Spool
	Admin   Admin
	Queue   Queue
	Limits  Limits
	Aliases map[string][]string // local name → resolved addresses
	// AliasesFile is the aliases_file merged into Aliases, "" if none.
	AliasesFile string
	// AliasOrigin says where each alias of Aliases is defined:
	// "FILE:LINE" of the aliases_file or of relay.hcl.
	AliasOrigin map[string]string
	// LocalCatchall is where mail for a local name with no alias goes
	// (local_catchall, resolved); nil: such mail is refused.
	LocalCatchall []string
	// Tags are the message tags (X-Outbox-Tag-NAME header fields, lower
	// case names) that become a label in delivery logs and metrics.
	Tags      []string
	Upstreams []*Upstream // in file order; the first takes all mail unless routes say otherwise
	Routes    []Route
	Log       Log
	Notify    Notify

	// Warnings are problems that do not stop start-up (an aliases_file
	// target Outbox refuses, for instance), each naming its file and line.
	Warnings []string
	// Placeholders lists the values still holding the Placeholder marker,
	// one "FILE:LINE:COL: ..." line each; only LoadAllowingPlaceholders
	// returns a configuration that has any.
	Placeholders []string
}

// Listen is one inbound SMTP listener.
type Listen struct {
	Address       string // as written
	Network       string // "tcp" or "unix"
	Addr          string // host:port or socket path (absolute)
	AllowNetworks []netip.Prefix
	TLSCert       string
	TLSKey        string
	Users         map[string]string // user → bcrypt hash, for inbound AUTH
	Loopback      bool              // the address is loopback or a unix socket
	SocketMode    os.FileMode       // unix sockets only
}

// Spool says where the queue lives.
type Spool struct {
	Path     string
	Maildrop string
}

// Admin is the admin socket that queue commands use.
type Admin struct {
	Socket string
	// MetricsAddress, when set, serves /metrics over HTTP on host:port.
	MetricsAddress string
	// QueueList says who may list the queue: "all" (the default, as
	// Postfix's mailq) or "privileged" (root and the daemon's user).
	QueueList string
}

// Queue holds the retry schedule.
type Queue struct {
	RetryInitial time.Duration
	RetryMax     time.Duration
	Lifetime     time.Duration
	DelayWarning time.Duration // 0: never
	DoubleBounce string        // where bounces of bounces go; "" = log only
}

// Limits bound what one client may do.
type Limits struct {
	MaxMessageSize int64
	MaxRecipients  int
	MaxConnections int
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
}

// Log configures logging.
type Log struct {
	Level  string // debug | info | warn | error
	Format string // text | json
}

// Upstream is one delivery target.
type Upstream struct {
	Name            string
	Type            string // smtp | maildir
	Provider        string
	Host            string
	Port            int
	TLS             string // starttls | tls | none
	CAFile          string
	TLSSkipVerify   bool
	Username        string
	PasswordFile    string
	PasswordEnv     string
	PasswordCommand string
	TokenFile       string
	TokenCommand    string
	Auth            string
	Region          string
	MaxConnections  int
	RateN           int
	RatePer         time.Duration
	EnvelopeFrom    string
	FromHeader      string // keep | rewrite
	Path            string // maildir
	IdleTimeout     time.Duration
	ConnectTimeout  time.Duration
	OAuth2          *OAuth2 // nil without an oauth2 block
}

// Route sends matching mail to an ordered list of upstreams.
type Route struct {
	Senders          []string // addresses or domains ("example.com" or "@example.com")
	RecipientDomains []string
	Upstreams        []string
}

// raw structures, as decodeBody fills them from `hcl` tags.
type rawFile struct {
	Hostname    string         `hcl:"hostname,optional"`
	AliasesFile string         `hcl:"aliases_file,optional"`
	Catchall    *hcl.Attribute `hcl:"local_catchall,optional"`
	Tags        []string       `hcl:"tags,optional"`
	Listen      []rawListen    `hcl:"listen,block"`
	Spool       *rawSpool      `hcl:"spool,block"`
	Admin       *rawAdmin      `hcl:"admin,block"`
	Queue       *rawQueue      `hcl:"queue,block"`
	Limits      *rawLimits     `hcl:"limits,block"`
	Aliases     *rawAliases    `hcl:"aliases,block"`
	Upstreams   []rawUpstream  `hcl:"upstream,block"`
	Routes      []rawRoute     `hcl:"route,block"`
	Log         *rawLog        `hcl:"log,block"`
	Notify      *rawNotify     `hcl:"notify,block"`
	Body        hcl.Body       `hcl:",body"`
}

type rawListen struct {
	Address       string            `hcl:"address"`
	AllowNetworks []string          `hcl:"allow_networks,optional"`
	TLSCert       string            `hcl:"tls_cert,optional"`
	TLSKey        string            `hcl:"tls_key,optional"`
	Auth          map[string]string `hcl:"auth,optional"`
	SocketMode    string            `hcl:"socket_mode,optional"`
	Body          hcl.Body          `hcl:",body"`
	DefRange      hcl.Range         `hcl:",def_range"`
}

type rawSpool struct {
	Path     string   `hcl:"path,optional"`
	Maildrop string   `hcl:"maildrop,optional"`
	Body     hcl.Body `hcl:",body"`
}

type rawAdmin struct {
	Socket         string   `hcl:"socket,optional"`
	MetricsAddress string   `hcl:"metrics_address,optional"`
	QueueList      string   `hcl:"queue_list,optional"`
	Body           hcl.Body `hcl:",body"`
}

type rawQueue struct {
	RetryInitial string   `hcl:"retry_initial,optional"`
	RetryMax     string   `hcl:"retry_max,optional"`
	Lifetime     string   `hcl:"lifetime,optional"`
	DelayWarning string   `hcl:"delay_warning,optional"`
	DoubleBounce string   `hcl:"double_bounce,optional"`
	Body         hcl.Body `hcl:",body"`
}

type rawLimits struct {
	MaxMessageSize string   `hcl:"max_message_size,optional"`
	MaxRecipients  *int     `hcl:"max_recipients,optional"`
	MaxConnections *int     `hcl:"max_connections,optional"`
	ReadTimeout    string   `hcl:"read_timeout,optional"`
	WriteTimeout   string   `hcl:"write_timeout,optional"`
	Body           hcl.Body `hcl:",body"`
}

type rawAliases struct {
	Entries hcl.Attributes `hcl:",remain"`
}

type rawLog struct {
	Level  string   `hcl:"level,optional"`
	Format string   `hcl:"format,optional"`
	Body   hcl.Body `hcl:",body"`
}

type rawUpstream struct {
	Name            string    `hcl:"name,label"`
	Type            string    `hcl:"type,optional"`
	Provider        string    `hcl:"provider,optional"`
	Host            string    `hcl:"host,optional"`
	Port            *int      `hcl:"port,optional"`
	TLS             string    `hcl:"tls,optional"`
	CAFile          string    `hcl:"ca_file,optional"`
	TLSSkipVerify   bool      `hcl:"tls_skip_verify,optional"`
	Username        string    `hcl:"username,optional"`
	PasswordFile    string    `hcl:"password_file,optional"`
	PasswordEnv     string    `hcl:"password_env,optional"`
	PasswordCommand string    `hcl:"password_command,optional"`
	TokenFile       string    `hcl:"token_file,optional"`
	TokenCommand    string    `hcl:"token_command,optional"`
	Auth            string    `hcl:"auth,optional"`
	Region          string    `hcl:"region,optional"`
	MaxConnections  *int      `hcl:"max_connections,optional"`
	Rate            string    `hcl:"rate,optional"`
	EnvelopeFrom    string    `hcl:"envelope_from,optional"`
	FromHeader      string    `hcl:"from_header,optional"`
	Path            string    `hcl:"path,optional"`
	IdleTimeout     string    `hcl:"idle_timeout,optional"`
	ConnectTimeout  string    `hcl:"connect_timeout,optional"`
	Body            hcl.Body  `hcl:",body"`
	DefRange        hcl.Range `hcl:",def_range"`

	OAuth2 *rawOAuth2 `hcl:"oauth2,block"`
}

type rawRoute struct {
	Senders          []string  `hcl:"sender,optional"`
	RecipientDomains []string  `hcl:"recipient_domain,optional"`
	Upstreams        []string  `hcl:"upstreams"`
	Body             hcl.Body  `hcl:",body"`
	DefRange         hcl.Range `hcl:",def_range"`
}

// Error carries HCL diagnostics together with the sources needed to print
// them with context.
type Error struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteString("\n")
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": ")
			b.WriteString(d.Detail)
		}
	}
	return b.String()
}

// Locate returns the configuration path to use: the flag value, else
// OUTBOX_CONFIG, else DefaultPath.
func Locate(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("OUTBOX_CONFIG"); env != "" {
		return env
	}
	return DefaultPath
}

// Load reads, parses and validates the file at path. The error, when not
// nil, is an *Error for problems in the file.
func Load(path string) (*Config, error) {
	return load(path, false)
}

// LoadAllowingPlaceholders is Load for the sendmail shim: values holding
// the Placeholder marker are listed in Config.Placeholders instead of
// failing, so that mail submitted on a machine whose configuration is not
// filled in yet waits in the maildrop folder (the daemon refuses to start
// until it is) rather than being lost.
func LoadAllowingPlaceholders(path string) (*Config, error) {
	return load(path, true)
}

func load(path string, allowPlaceholders bool) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("cannot read configuration: %w (pass --config FILE, -C FILE to sendmail, or set OUTBOX_CONFIG)", err)
	}
	return parse(abs, src, allowPlaceholders)
}

// Parse parses and validates configuration source; path names it in
// diagnostics and anchors relative paths.
func Parse(path string, src []byte) (*Config, error) {
	return parse(path, src, false)
}

func parse(path string, src []byte, allowPlaceholders bool) (*Config, error) {
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	files := map[string]*hcl.File{path: f}
	if diags.HasErrors() {
		return nil, &Error{Diags: diags, Files: files}
	}
	var raw rawFile
	diags = decodeBody(f.Body, &raw)
	if diags.HasErrors() {
		return nil, &Error{Diags: explainUnknown(diags), Files: files}
	}
	// A placeholder is reported as such, not also as whatever else is
	// wrong with "CHANGE-ME" as a provider name or an address.
	var placeholders hcl.Diagnostics
	v := &validator{dir: filepath.Dir(path)}
	if sb, ok := f.Body.(*hclsyntax.Body); ok {
		placeholders, v.skip = findPlaceholders(sb, path)
	}
	cfg := v.build(path, &raw)
	if v.diags.HasErrors() || len(placeholders) > 0 && !allowPlaceholders {
		var errs hcl.Diagnostics
		if !allowPlaceholders {
			errs = append(errs, placeholders...)
		}
		for _, d := range v.diags {
			if d.Severity == hcl.DiagError {
				errs = append(errs, d)
			}
		}
		return nil, &Error{Diags: errs, Files: files}
	}
	for _, d := range v.diags {
		if d.Severity == hcl.DiagWarning {
			cfg.Warnings = append(cfg.Warnings, d.Detail)
		}
	}
	if len(placeholders) > 0 {
		cfg.Placeholders = strings.Split((&Error{Diags: placeholders}).Error(), "\n")
	}
	return cfg, nil
}

// explainUnknown completes HCL's diagnostics for unknown arguments and
// blocks, which say what is wrong but not what to do about it.
func explainUnknown(diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		switch d.Summary {
		case "Unsupported argument", "Unsupported block type":
			if !strings.Contains(d.Detail, "Did you mean") {
				d.Detail += " Check the spelling, or remove it; the README lists every key."
			} else {
				d.Detail += " Otherwise remove it; the README lists every key."
			}
		}
	}
	return diags
}

type validator struct {
	dir      string
	hostname string
	diags    hcl.Diagnostics
	skip     []hcl.Range // attributes holding a placeholder: their errors are not reported
	spoolDir string      // the spool's folder, where oauth2 token files go by default
}

func (v *validator) errf(rng hcl.Range, summary, detail string, args ...any) {
	if within(rng, v.skip) {
		return
	}
	r := rng
	v.diags = append(v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, args...),
		Subject:  &r,
	})
}

// attrRange finds where attribute name is written in body, falling back to
// the body's own range.
func attrRange(body hcl.Body, name string) hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		if a, ok := sb.Attributes[name]; ok {
			return a.SrcRange
		}
		return sb.SrcRange
	}
	return hcl.Range{}
}

func (v *validator) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

func (v *validator) duration(body hcl.Body, name, val string, def time.Duration) time.Duration {
	if val == "" {
		return def
	}
	d, err := time.ParseDuration(val)
	if err != nil || d < 0 {
		v.errf(attrRange(body, name), "Invalid duration", "%s = %q is not a duration; write a Go duration such as \"30s\", \"5m\", \"1h\" or \"120h\".", name, val)
		return def
	}
	return d
}

func (v *validator) build(path string, raw *rawFile) *Config {
	cfg := &Config{Path: path, Dir: v.dir}

	cfg.Hostname = raw.Hostname
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		cfg.Hostname = h
		if !strings.Contains(h, ".") {
			at := attrRange(raw.Body, "hostname")
			at.End = at.Start
			v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Short hostname", Subject: &at,
				Detail: fmt.Sprintf("this machine's host name %q has no domain, and bare names such as root become root@%s, which providers may refuse; set hostname = \"%s.example.com\" (a name of yours) in %s", h, h, h, filepath.Base(path))})
		}
	} else if !validHostname(cfg.Hostname) {
		v.errf(attrRange(raw.Body, "hostname"), "Invalid hostname", "hostname = %q is not a host name; use letters, digits, dots and hyphens, like \"relay.example.com\".", cfg.Hostname)
	}

	// Spool and admin first: listeners may refer to var/.
	cfg.Spool = Spool{Path: "/var/spool/outbox/spool.db", Maildrop: "/var/spool/outbox/maildrop"}
	if s := raw.Spool; s != nil {
		if s.Path != "" {
			cfg.Spool.Path = v.path(s.Path)
			// The maildrop folder belongs beside the spool it feeds (as
			// Postfix keeps maildrop under queue_directory): a spool
			// moved elsewhere must not keep importing from the default.
			cfg.Spool.Maildrop = filepath.Join(filepath.Dir(cfg.Spool.Path), "maildrop")
		}
		if s.Maildrop != "" {
			cfg.Spool.Maildrop = v.path(s.Maildrop)
		}
	}
	cfg.Admin = Admin{Socket: "/run/outbox/admin.sock"}
	if a := raw.Admin; a != nil && a.Socket != "" {
		cfg.Admin.Socket = v.path(strings.TrimPrefix(a.Socket, "unix:"))
	}
	if a := raw.Admin; a != nil && a.MetricsAddress != "" {
		if _, port, err := net.SplitHostPort(a.MetricsAddress); err != nil || port == "" {
			v.errf(attrRange(a.Body, "metrics_address"), "Invalid metrics_address", "metrics_address = %q must be \"host:port\", like \"127.0.0.1:9466\".", a.MetricsAddress)
		}
		cfg.Admin.MetricsAddress = a.MetricsAddress
	}
	cfg.Admin.QueueList = "all"
	if a := raw.Admin; a != nil && a.QueueList != "" {
		if a.QueueList != "all" && a.QueueList != "privileged" {
			v.errf(attrRange(a.Body, "queue_list"), "Invalid queue_list", "queue_list = %q; write \"all\" (everyone may list the queue) or \"privileged\" (root and the outbox user only).", a.QueueList)
		}
		cfg.Admin.QueueList = a.QueueList
	}

	for i := range raw.Listen {
		if l, ok := v.listen(&raw.Listen[i]); ok {
			cfg.Listen = append(cfg.Listen, l)
		}
	}
	if len(raw.Listen) == 0 {
		cfg.Listen = []Listen{
			{Address: "127.0.0.1:25", Network: "tcp", Addr: "127.0.0.1:25", Loopback: true},
			{Address: "[::1]:25", Network: "tcp", Addr: "[::1]:25", Loopback: true},
			{Address: "unix:/run/outbox/submit.sock", Network: "unix", Addr: "/run/outbox/submit.sock", Loopback: true, SocketMode: 0o666},
		}
	}
	seen := map[string]bool{}
	for i, l := range cfg.Listen {
		key := l.Network + " " + l.Addr
		if seen[key] && i < len(raw.Listen) {
			v.errf(attrRange(raw.Listen[i].Body, "address"), "Duplicate listen address", "%s is listed twice; remove one of the listen blocks.", l.Address)
		}
		seen[key] = true
	}

	cfg.Queue = Queue{RetryInitial: time.Minute, RetryMax: time.Hour, Lifetime: 120 * time.Hour}
	if q := raw.Queue; q != nil {
		cfg.Queue.RetryInitial = v.duration(q.Body, "retry_initial", q.RetryInitial, cfg.Queue.RetryInitial)
		cfg.Queue.RetryMax = v.duration(q.Body, "retry_max", q.RetryMax, cfg.Queue.RetryMax)
		cfg.Queue.Lifetime = v.duration(q.Body, "lifetime", q.Lifetime, cfg.Queue.Lifetime)
		cfg.Queue.DelayWarning = v.duration(q.Body, "delay_warning", q.DelayWarning, 0)
		if cfg.Queue.RetryInitial <= 0 {
			v.errf(attrRange(q.Body, "retry_initial"), "Invalid retry_initial", "retry_initial must be more than 0, for example \"1m\".")
		}
		if cfg.Queue.RetryMax < cfg.Queue.RetryInitial {
			v.errf(attrRange(q.Body, "retry_max"), "Invalid retry_max", "retry_max (%s) is shorter than retry_initial (%s); make it at least as long.", cfg.Queue.RetryMax, cfg.Queue.RetryInitial)
		}
		if cfg.Queue.Lifetime <= 0 {
			v.errf(attrRange(q.Body, "lifetime"), "Invalid lifetime", "lifetime must be more than 0, for example \"120h\" (5 days).")
		}
		if cfg.Queue.DelayWarning > 0 && cfg.Queue.DelayWarning >= cfg.Queue.Lifetime {
			v.errf(attrRange(q.Body, "delay_warning"), "Invalid delay_warning", "delay_warning (%s) must be shorter than lifetime (%s), or \"0\" to send no delay notices.", cfg.Queue.DelayWarning, cfg.Queue.Lifetime)
		}
		if q.DoubleBounce != "" {
			if !ValidAddress(q.DoubleBounce) {
				v.errf(attrRange(q.Body, "double_bounce"), "Invalid double_bounce", "double_bounce = %q is not a mail address; write one like \"postmaster@example.com\".", q.DoubleBounce)
			}
			cfg.Queue.DoubleBounce = q.DoubleBounce
		}
	}

	cfg.Limits = Limits{MaxMessageSize: 25 << 20, MaxRecipients: 100, MaxConnections: 100, ReadTimeout: 5 * time.Minute, WriteTimeout: time.Minute}
	if l := raw.Limits; l != nil {
		if l.MaxMessageSize != "" {
			n, err := ParseSize(l.MaxMessageSize)
			if err != nil || n <= 0 {
				v.errf(attrRange(l.Body, "max_message_size"), "Invalid max_message_size", "max_message_size = %q is not a size; write bytes or a number with KiB, MiB or GiB, like \"25MiB\".", l.MaxMessageSize)
			} else {
				cfg.Limits.MaxMessageSize = n
			}
		}
		if l.MaxRecipients != nil {
			if *l.MaxRecipients < 1 {
				v.errf(attrRange(l.Body, "max_recipients"), "Invalid max_recipients", "max_recipients must be at least 1.")
			}
			cfg.Limits.MaxRecipients = *l.MaxRecipients
		}
		if l.MaxConnections != nil {
			if *l.MaxConnections < 1 {
				v.errf(attrRange(l.Body, "max_connections"), "Invalid max_connections", "max_connections must be at least 1.")
			}
			cfg.Limits.MaxConnections = *l.MaxConnections
		}
		cfg.Limits.ReadTimeout = v.duration(l.Body, "read_timeout", l.ReadTimeout, cfg.Limits.ReadTimeout)
		cfg.Limits.WriteTimeout = v.duration(l.Body, "write_timeout", l.WriteTimeout, cfg.Limits.WriteTimeout)
	}

	cfg.Log = Log{Level: "info", Format: "text"}
	if l := raw.Log; l != nil {
		if l.Level != "" {
			switch l.Level {
			case "debug", "info", "warn", "error":
				cfg.Log.Level = l.Level
			default:
				v.errf(attrRange(l.Body, "level"), "Invalid log level", "level = %q; use \"debug\", \"info\", \"warn\" or \"error\".", l.Level)
			}
		}
		if l.Format != "" {
			switch l.Format {
			case "text", "json":
				cfg.Log.Format = l.Format
			default:
				v.errf(attrRange(l.Body, "format"), "Invalid log format", "format = %q; use \"text\" or \"json\".", l.Format)
			}
		}
	}

	cfg.Notify = v.notify(raw.Notify)
	cfg.Tags = v.tags(raw)

	v.hostname = cfg.Hostname
	cfg.Aliases, cfg.AliasOrigin, cfg.LocalCatchall = v.aliases(raw)
	if raw.AliasesFile != "" {
		cfg.AliasesFile = v.path(raw.AliasesFile)
	}

	names := map[string]bool{}
	v.spoolDir = filepath.Dir(cfg.Spool.Path)
	for i := range raw.Upstreams {
		u := v.upstream(&raw.Upstreams[i])
		if names[u.Name] {
			v.errf(raw.Upstreams[i].DefRange, "Duplicate upstream", "upstream %q is defined twice; give each upstream block its own name.", u.Name)
		}
		names[u.Name] = true
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	if len(raw.Upstreams) == 0 {
		v.errf(raw.Body.MissingItemRange(), "No upstream", "Outbox needs at least one upstream block to deliver to; add, for example, upstream \"default\" { provider = \"gmail\" ... } or upstream \"capture\" { type = \"maildir\" path = \"var/maildir\" }.")
	}
	for i := range raw.Routes {
		r := &raw.Routes[i]
		for _, n := range r.Upstreams {
			if !names[n] {
				v.errf(attrRange(r.Body, "upstreams"), "Unknown upstream", "route names upstream %q, which no upstream block defines; known: %s.", n, strings.Join(sortedKeys(names), ", "))
			}
		}
		if len(r.Upstreams) == 0 {
			v.errf(attrRange(r.Body, "upstreams"), "Empty route", "a route needs at least one upstream name in upstreams.")
		}
		if len(r.Senders) == 0 && len(r.RecipientDomains) == 0 {
			v.errf(r.DefRange, "Route matches nothing", "give the route sender = [...] and/or recipient_domain = [...]; mail no route matches goes to the first upstream.")
		}
		route := Route{Upstreams: r.Upstreams}
		for _, s := range r.Senders {
			route.Senders = append(route.Senders, strings.ToLower(strings.TrimPrefix(s, "@")))
		}
		for _, d := range r.RecipientDomains {
			route.RecipientDomains = append(route.RecipientDomains, strings.ToLower(strings.TrimPrefix(d, "@")))
		}
		cfg.Routes = append(cfg.Routes, route)
	}
	return cfg
}

func (v *validator) listen(r *rawListen) (Listen, bool) {
	l := Listen{Address: r.Address, TLSCert: v.path(r.TLSCert), TLSKey: v.path(r.TLSKey), Users: r.Auth}
	rng := attrRange(r.Body, "address")
	if strings.HasPrefix(r.Address, "unix:") {
		p := strings.TrimPrefix(r.Address, "unix:")
		if p == "" {
			v.errf(rng, "Invalid listen address", "unix: needs a socket path, like \"unix:var/submit.sock\".")
			return l, false
		}
		l.Network, l.Addr, l.Loopback = "unix", v.path(p), true
		l.SocketMode = 0o666
		if r.SocketMode != "" {
			var m uint32
			if _, err := fmt.Sscanf(r.SocketMode, "%o", &m); err != nil || m > 0o777 {
				v.errf(attrRange(r.Body, "socket_mode"), "Invalid socket_mode", "socket_mode = %q; write an octal mode like \"0660\".", r.SocketMode)
			}
			l.SocketMode = os.FileMode(m)
		}
	} else {
		host, port, err := net.SplitHostPort(r.Address)
		if err != nil || port == "" {
			v.errf(rng, "Invalid listen address", "address = %q must be \"host:port\" (like \"127.0.0.1:25\" or \"[::1]:25\") or \"unix:PATH\".", r.Address)
			return l, false
		}
		l.Network, l.Addr = "tcp", r.Address
		l.Loopback = loopback.Host(host)
	}
	for _, n := range r.AllowNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			if a, err2 := netip.ParseAddr(n); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				v.errf(attrRange(r.Body, "allow_networks"), "Invalid network", "allow_networks entry %q is not a CIDR; write one like \"10.0.0.0/8\" or \"192.0.2.7/32\".", n)
				continue
			}
		}
		if p.Bits() == 0 {
			// "0.0.0.0/0" lets the whole Internet relay: an open relay by another name.
			v.errf(attrRange(r.Body, "allow_networks"), "Open relay refused", "allow_networks entry %q admits every address, which makes an open relay; list your clients' networks instead, like \"10.0.0.0/8\".", n)
			continue
		}
		l.AllowNetworks = append(l.AllowNetworks, p.Masked())
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		v.errf(r.DefRange, "Incomplete TLS", "set both tls_cert and tls_key for listener %s, or neither.", r.Address)
	}
	if len(l.Users) > 0 {
		if l.TLSCert == "" {
			v.errf(attrRange(r.Body, "auth"), "AUTH needs TLS", "listener %s offers AUTH but has no tls_cert/tls_key: passwords would cross the network in clear; add a certificate.", r.Address)
		}
		for u, h := range l.Users {
			if !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
				v.errf(attrRange(r.Body, "auth"), "Invalid password hash", "auth entry for %q is not a bcrypt hash; create one with `outbox hash-password`.", u)
			}
		}
	}
	if !l.Loopback && len(l.AllowNetworks) == 0 && len(l.Users) == 0 {
		v.errf(rng, "Open relay refused", "listener %s accepts connections beyond loopback but has neither allow_networks nor auth; anyone could relay through it. Add allow_networks = [\"10.0.0.0/8\"] (your clients' networks) and/or auth with users, or listen on 127.0.0.1.", r.Address)
	}
	return l, true
}

func (v *validator) upstream(r *rawUpstream) *Upstream {
	u := &Upstream{
		Name: r.Name, Type: r.Type, Provider: r.Provider, Host: r.Host, TLS: r.TLS,
		CAFile: v.path(r.CAFile), TLSSkipVerify: r.TLSSkipVerify, Username: r.Username,
		PasswordFile: v.path(r.PasswordFile), PasswordEnv: r.PasswordEnv, PasswordCommand: r.PasswordCommand,
		TokenFile: v.path(r.TokenFile), TokenCommand: r.TokenCommand, Auth: r.Auth, Region: r.Region,
		EnvelopeFrom: r.EnvelopeFrom, FromHeader: r.FromHeader, Path: v.path(r.Path),
		MaxConnections: 2,
	}
	if u.Type == "" {
		u.Type = "smtp"
	}
	u.IdleTimeout = v.duration(r.Body, "idle_timeout", r.IdleTimeout, 30*time.Second)
	u.ConnectTimeout = v.duration(r.Body, "connect_timeout", r.ConnectTimeout, 30*time.Second)
	switch u.Type {
	case "maildir":
		if u.Path == "" {
			v.errf(r.DefRange, "Maildir needs a path", "upstream %q has type = \"maildir\"; add path = \"var/maildir\" (relative to the configuration file).", u.Name)
		}
		for _, k := range []string{"provider", "host", "port", "tls", "username", "password_file", "password_env", "password_command", "token_file", "token_command", "rate"} {
			if sb, ok := r.Body.(*hclsyntax.Body); ok {
				if _, set := sb.Attributes[k]; set {
					v.errf(attrRange(r.Body, k), "Not for maildir", "%s has no meaning for a maildir upstream; remove it or set type = \"smtp\".", k)
				}
			}
		}
		if r.OAuth2 != nil {
			v.errf(r.OAuth2.DefRange, "Not for maildir", "oauth2 has no meaning for a maildir upstream; remove it or set type = \"smtp\".")
		}
		return u
	case "smtp":
	default:
		v.errf(attrRange(r.Body, "type"), "Invalid upstream type", "type = %q; use \"smtp\" or \"maildir\".", u.Type)
		return u
	}
	if u.Provider != "" && !IsPlaceholder(u.Provider) {
		p, err := preset.Lookup(u.Provider, u.Region)
		if err != nil {
			v.errf(attrRange(r.Body, "provider"), "Invalid provider", "%s.", err)
		} else {
			if u.Host == "" {
				u.Host = p.Host
			}
			if r.Port == nil {
				u.Port = p.Port
			}
			if u.TLS == "" {
				u.TLS = p.TLS
			}
			v.presetChecks(u, r, p)
		}
	}
	if r.Port != nil {
		u.Port = *r.Port
	}
	if u.TLS == "" {
		u.TLS = "starttls"
	}
	if u.Host == "" && !IsPlaceholder(u.Provider) {
		v.errf(r.DefRange, "Upstream needs a host", "upstream %q has no host; set host = \"smtp.example.com\" or provider = \"gmail\" (see the README for the provider list).", u.Name)
	}
	switch u.TLS {
	case "starttls":
		if u.Port == 0 {
			u.Port = 587
		}
	case "tls":
		if u.Port == 0 {
			u.Port = 465
		}
	case "none":
		if u.Port == 0 {
			u.Port = 25
		}
		if u.Host != "" && !loopback.Host(u.Host) {
			v.errf(attrRange(r.Body, "tls"), "Plaintext upstream refused", "tls = \"none\" is allowed only for loopback hosts, and %s is not one; use tls = \"starttls\" or \"tls\".", u.Host)
		}
	default:
		v.errf(attrRange(r.Body, "tls"), "Invalid tls mode", "tls = %q; use \"starttls\" (port 587), \"tls\" (implicit TLS, port 465) or \"none\" (loopback hosts only).", u.TLS)
	}
	if u.Port < 1 || u.Port > 65535 {
		v.errf(attrRange(r.Body, "port"), "Invalid port", "port %d is out of range 1-65535.", u.Port)
	}
	if u.Auth == "" {
		u.Auth = "auto"
	}
	switch u.Auth {
	case "auto", "plain", "login", "cram-md5", "xoauth2", "oauthbearer", "none":
	default:
		v.errf(attrRange(r.Body, "auth"), "Invalid auth", "auth = %q; use \"auto\", \"plain\", \"login\", \"cram-md5\", \"xoauth2\", \"oauthbearer\" or \"none\".", u.Auth)
	}
	secrets := 0
	for _, s := range []string{u.PasswordFile, u.PasswordEnv, u.PasswordCommand} {
		if s != "" {
			secrets++
		}
	}
	if secrets > 1 {
		v.errf(r.DefRange, "Several password sources", "upstream %q sets more than one of password_file, password_env and password_command; keep one.", u.Name)
	}
	for _, f := range []struct{ key, path string }{{"password_file", u.PasswordFile}, {"token_file", u.TokenFile}} {
		// Secrets are read at each connection, so a file created later
		// still works; a missing one is most often a typo, though.
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Missing secret file",
				Detail: fmt.Sprintf("upstream %q: %s %s does not exist; mail through it stays queued until it does.", u.Name, f.key, f.path)})
		}
	}
	if u.TokenFile != "" && u.TokenCommand != "" {
		v.errf(r.DefRange, "Several token sources", "upstream %q sets both token_file and token_command; keep one.", u.Name)
	}
	if (secrets > 0 || u.TokenFile != "" || u.TokenCommand != "") && u.Username == "" {
		v.errf(r.DefRange, "Missing username", "upstream %q has a password or token but no username; add username = \"you@example.com\".", u.Name)
	}
	v.oauth2(u, r)
	if (u.Auth == "xoauth2" || u.Auth == "oauthbearer") && u.TokenFile == "" && u.TokenCommand == "" && u.OAuth2 == nil {
		v.errf(attrRange(r.Body, "auth"), "Missing token", "auth = %q needs token_file or token_command.", u.Auth)
	}
	if r.MaxConnections != nil {
		if *r.MaxConnections < 1 {
			v.errf(attrRange(r.Body, "max_connections"), "Invalid max_connections", "max_connections must be at least 1.")
		}
		u.MaxConnections = *r.MaxConnections
	}
	if r.Rate != "" {
		n, per, err := ParseRate(r.Rate)
		if err != nil {
			v.errf(attrRange(r.Body, "rate"), "Invalid rate", "rate = %q; write a count per unit, like \"10/second\", \"100/minute\", \"500/hour\" or \"2000/day\".", r.Rate)
		}
		u.RateN, u.RatePer = n, per
	}
	if u.EnvelopeFrom != "" && !ValidAddress(u.EnvelopeFrom) {
		v.errf(attrRange(r.Body, "envelope_from"), "Invalid envelope_from", "envelope_from = %q is not a mail address; write the account's address, like \"me@qq.com\".", u.EnvelopeFrom)
	}
	switch u.FromHeader {
	case "":
		u.FromHeader = "keep"
	case "keep":
	case "rewrite":
		if u.EnvelopeFrom == "" && !ValidAddress(u.Username) {
			v.errf(attrRange(r.Body, "from_header"), "Nothing to rewrite to", "from_header = \"rewrite\" needs envelope_from (or a username that is an address).")
		}
	default:
		v.errf(attrRange(r.Body, "from_header"), "Invalid from_header", "from_header = %q; use \"keep\" or \"rewrite\".", u.FromHeader)
	}
	if u.Path != "" {
		v.errf(attrRange(r.Body, "path"), "Not for smtp", "path is for maildir upstreams; remove it or set type = \"maildir\".")
	}
	return u
}

// aliasDef is one alias as written, in the aliases block or in the
// aliases_file.
type aliasDef struct {
	targets []string
	rng     hcl.Range // the block's attribute, or the aliases_file attribute
	origin  string    // "FILE:LINE"
	file    bool      // from the aliases_file: its problems are warnings
}

func (v *validator) warnf(format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "aliases", Detail: fmt.Sprintf(format, args...)})
}

// aliases merges aliases_file and the aliases block (the block wins for a
// name both define), resolves local_catchall, then every local name to its
// final addresses. It returns the aliases, where each is defined, and the
// catch-all's addresses.
//
// A problem with an alias of the block is an error. One with an entry of
// aliases_file is a warning naming its line, and the name is left out:
// /etc/aliases is shared with the system's conventions (Debian's may
// point names at a root with no entry) and must not stop the daemon.
func (v *validator) aliases(raw *rawFile) (map[string][]string, map[string]string, []string) {
	defs := map[string]*aliasDef{}
	if raw.AliasesFile != "" {
		p := v.path(raw.AliasesFile)
		entries, warns, err := ReadAliasesFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Debian does not always ship /etc/aliases, yet the packaged
			// configuration names it.
			v.warnf("aliases_file %s does not exist; only the aliases block is used", p)
		case err != nil:
			v.errf(attrRange(raw.Body, "aliases_file"), "Cannot read aliases_file", "%s; fix the path or remove aliases_file.", err)
		}
		for _, w := range warns {
			v.warnf("%s", w)
		}
		for _, e := range entries {
			origin := fmt.Sprintf("%s:%d", p, e.Line)
			if prev, dup := defs[e.Name]; dup {
				v.warnf("%s: %s is defined again (first at %s); this line wins", origin, e.Name, prev.origin)
			}
			defs[e.Name] = &aliasDef{targets: e.Targets, rng: attrRange(raw.Body, "aliases_file"), origin: origin, file: true}
		}
	}
	if raw.Aliases != nil {
		for name, a := range raw.Aliases.Entries {
			list := v.targetList(a, fmt.Sprintf("alias %q", name))
			if len(list) == 0 {
				v.errf(a.Range, "Empty alias", "alias %q has no target; give it an address.", name)
			}
			defs[strings.ToLower(name)] = &aliasDef{targets: list, rng: a.Range, origin: fmt.Sprintf("%s:%d", a.Range.Filename, a.Range.Start.Line)}
		}
	}
	r := &aliasResolver{defs: defs, hostname: v.hostname}
	if a := raw.Catchall; a != nil {
		list := v.targetList(a, "local_catchall")
		if len(list) == 0 {
			v.errf(a.Range, "Empty local_catchall", "local_catchall has no address; give it one, like \"admin@example.com\", or remove it so that mail to unknown local names is refused.")
		}
		// The catch-all is resolved without itself: "root" as catch-all
		// with root undefined would otherwise point at itself.
		out, problem := r.expandList(list, nil)
		if problem != "" {
			v.errf(a.Range, "Invalid local_catchall", "local_catchall: %s.", problem)
		} else {
			r.catchall = out
		}
	}
	resolved := map[string][]string{}
	origin := map[string]string{}
	for _, name := range sortedKeys(defs) {
		d := defs[name]
		out, problem := r.expandList(d.targets, []string{name})
		switch {
		case problem == "":
			resolved[name], origin[name] = out, d.origin
		case d.file:
			v.warnf("%s: %s: %s; mail to %s is refused (550) until this is fixed", d.origin, name, problem, name)
		default:
			v.errf(d.rng, "Invalid alias", "alias %q: %s.", name, problem)
		}
	}
	return resolved, origin, r.catchall
}

// targetList reads an alias value or local_catchall: an address, a
// comma-separated string of them, or a list.
func (v *validator) targetList(a *hcl.Attribute, what string) []string {
	val, d := a.Expr.Value(nil)
	if d.HasErrors() {
		v.diags = append(v.diags, d...)
		return nil
	}
	var list []string
	switch {
	case val.Type() == cty.String && !val.IsNull():
		list = splitTargets(val.AsString())
	case val.CanIterateElements():
		for it := val.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() != cty.String || e.IsNull() {
				v.errf(a.Range, "Invalid alias", "%s must be an address or a list of addresses, like [\"ops@example.com\", \"alice\"].", what)
				return nil
			}
			list = append(list, splitTargets(e.AsString())...)
		}
	default:
		v.errf(a.Range, "Invalid alias", "%s must be an address or a list of addresses, like [\"ops@example.com\", \"alice\"].", what)
	}
	return list
}

// aliasResolver follows local names through the aliases to addresses
// with a domain.
type aliasResolver struct {
	defs     map[string]*aliasDef
	hostname string
	catchall []string // where a local name with no alias goes; nil: nowhere
}

// expandList resolves targets; stack holds the names being expanded, to
// catch loops. problem, when not "", says why the targets lead nowhere.
func (r *aliasResolver) expandList(targets []string, stack []string) (out []string, problem string) {
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			out = append(out, a)
		}
	}
	var walk func(targets []string, stack []string) string
	walk = func(targets []string, stack []string) string {
		for _, t := range targets {
			// "\name" is the local mailbox of name, not its alias:
			// Outbox has no local mailboxes, so it is an unaliased name.
			if IsPlaceholder(t) {
				// Reported on its own; followed as a name, it would
				// also bring errors about what it leads to.
				add(t)
				continue
			}
			mailbox := strings.HasPrefix(t, `\`)
			t = strings.TrimPrefix(t, `\`)
			name := strings.ToLower(t)
			if i := strings.LastIndexByte(t, '@'); i >= 0 {
				if !ValidAddress(t) {
					return fmt.Sprintf("%q is not a valid address", t)
				}
				if !isLocalDomain(t[i+1:], r.hostname) {
					add(t)
					continue
				}
				// root@localhost is the local name root again.
				name = strings.ToLower(t[:i])
			} else if !ValidLocalName(t) {
				return fmt.Sprintf("%q is neither an address nor a local name", t)
			}
			d, defined := r.defs[name]
			if defined && !mailbox {
				for _, s := range stack {
					if s == name {
						return fmt.Sprintf("aliases loop: %s → %s; break the cycle by pointing one of them at a full address", strings.Join(stack, " → "), name)
					}
				}
				if p := walk(d.targets, append(stack, name)); p != "" {
					return p
				}
				continue
			}
			if r.catchall == nil {
				return fmt.Sprintf("the local name %q has no alias and local_catchall is not set; add %s = \"someone@example.com\" to the aliases block, use a full address, or set local_catchall", t, name)
			}
			for _, a := range r.catchall {
				add(a)
			}
		}
		return ""
	}
	if p := walk(targets, stack); p != "" {
		return nil, p
	}
	return out, ""
}

func splitTargets(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SubmitSocket is the first unix listener, which the sendmail shim uses; ""
// when there is none.
func (c *Config) SubmitSocket() string {
	for _, l := range c.Listen {
		if l.Network == "unix" {
			return l.Addr
		}
	}
	return ""
}

// Upstream returns the upstream of that name, or nil.
func (c *Config) Upstream(name string) *Upstream {
	for _, u := range c.Upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// validHostname reports whether h can be our EHLO name: a domain as
// validDomain takes it, but in ASCII and without an address literal.
func validHostname(h string) bool {
	return !strings.HasPrefix(h, "[") && mailhdr.IsASCII(h) && validDomain(h)
}
