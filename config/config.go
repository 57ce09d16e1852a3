// Package config loads and validates relay.hcl, the one configuration file of
// Outbox. Every error is an HCL diagnostic with file:line:column and a
// sentence that names the fix.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// DefaultPath is where the configuration lives when neither --config nor
// OUTBOX_CONFIG says otherwise.
const DefaultPath = "/etc/outbox/relay.hcl"

// defaultSubmitSocket is the submission socket when relay.hcl has no
// listen block.
const defaultSubmitSocket = "/run/outbox/submit.sock"

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

type rawLog struct {
	Level  string   `hcl:"level,optional"`
	Format string   `hcl:"format,optional"`
	Body   hcl.Body `hcl:",body"`
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
			{Address: "unix:" + defaultSubmitSocket, Network: "unix", Addr: defaultSubmitSocket, Loopback: true, SocketMode: 0o666},
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
	if sm := cfg.SendmailSocket(); sm != "" {
		for i, l := range cfg.Listen {
			if l.Network == "unix" && l.Addr == sm && i < len(raw.Listen) {
				v.errf(attrRange(raw.Listen[i].Body, "address"), "Listen address taken", "%s is the sendmail socket, which the daemon serves beside the first unix listener for /usr/sbin/sendmail; name this socket otherwise.", l.Address)
			}
		}
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

// SendmailSocket is where the daemon serves the sendmail protocol (the
// small C sendmail hands it whole calls): "sendmail.sock" in the folder of
// SubmitSocket, so that packages and the C shim find it at
// /run/outbox/sendmail.sock; "" when there is no unix listener.
func (c *Config) SendmailSocket() string {
	s := c.SubmitSocket()
	if s == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(s), "sendmail.sock")
}
