package sendmailshim

import (
	"fmt"
	"strings"

	"github.com/outbox-mta/outbox/internal/dsn"
)

// Mode is what one invocation does.
type Mode int

// The modes, selected by -b, -I, -q or the name the binary runs under.
const (
	ModeDeliver    Mode = iota // -bm: read a message and submit it
	ModeSMTP                   // -bs: an SMTP session on stdin/stdout
	ModeQueue                  // -bp, mailq: list the queue
	ModeNewAliases             // -bi, -I, newaliases: check the aliases
	ModeFlush                  // -q: retry the queue now
	ModeVerify                 // -bv: check recipients without sending
)

// Options is a parsed command line.
type Options struct {
	Mode        Mode
	Recipients  []string // operands after the options
	Sender      string   // -f / -r, as given
	SenderSet   bool     // -f or -r was given (an empty sender is <>)
	FullName    string   // -F
	ExtractRcpt bool     // -t
	IgnoreDots  bool     // -i, -oi: a line with a single "." does not end the input
	Verbose     bool     // -v
	Notify      string   // -N
	Ret         string   // -R: "full" or "hdrs"
	EnvID       string   // -V
	BodyType    string   // -B: "7BIT" or "8BITMIME"
	Config      string   // -C
	ConfigSet   bool     // -C was given, perhaps empty
	QueueIntvl  string   // -qINTERVAL: accepted, ignored
	Ignored     []string // options accepted without effect, for -v
}

// UsageError is a command line the shim cannot accept; it exits 64.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// withArg lists the option letters that take an argument, as in the
// getopt string of Postfix's sendmail ("A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:q:r:tvx").
var withArg = map[byte]bool{
	'A': true, 'B': true, 'C': true, 'F': true, 'L': true, 'N': true, 'O': true,
	'R': true, 'V': true, 'X': true, 'b': true, 'e': true, 'f': true, 'h': true,
	'o': true, 'p': true, 'q': true, 'r': true,
}

// noArg lists the option letters that stand alone.
var noArg = map[byte]bool{
	'G': true, 'I': true, 'U': true, 'c': true, 'i': true, 'm': true, 'n': true,
	't': true, 'v': true, 'x': true,
}

// ParseArgs parses the arguments after the program name the way Sendmail
// and Postfix's sendmail do: single-letter options that may be combined
// ("-ti"), option arguments attached or separate ("-fADDR", "-f ADDR"),
// "--" ending the options, the first operand ending them too. mode is the
// starting mode, given by the name the binary runs under. The error is a
// *UsageError.
func ParseArgs(mode Mode, args []string) (*Options, error) {
	o := &Options{Mode: mode}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		// "-q" alone flushes; getopt would want an argument for it.
		if a == "-q" {
			o.Mode = ModeFlush
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if noArg[c] {
				o.flag(c)
				continue
			}
			if !withArg[c] {
				return nil, usagef("invalid option -- '%c'", c)
			}
			var val string
			if j+1 < len(a) {
				val = a[j+1:]
			} else if i+1 < len(args) {
				i++
				val = args[i]
			} else {
				return nil, usagef("option requires an argument -- '%c'", c)
			}
			if err := o.option(c, val); err != nil {
				return nil, err
			}
			break
		}
	}
	o.Recipients = append(o.Recipients, args[i:]...)
	switch o.Mode {
	case ModeQueue, ModeNewAliases, ModeFlush, ModeSMTP:
		if len(o.Recipients) > 0 {
			return nil, usagef("%s mode takes no recipients", modeName(o.Mode))
		}
		if o.ExtractRcpt {
			return nil, usagef("-t can be used only in delivery mode")
		}
	}
	return o, nil
}

func modeName(m Mode) string {
	switch m {
	case ModeSMTP:
		return "SMTP session (-bs)"
	case ModeQueue:
		return "queue listing (-bp)"
	case ModeNewAliases:
		return "alias check (-bi)"
	case ModeFlush:
		return "queue flush (-q)"
	case ModeVerify:
		return "verify (-bv)"
	}
	return "delivery"
}

func (o *Options) flag(c byte) {
	switch c {
	case 'I':
		o.Mode = ModeNewAliases
	case 'i':
		o.IgnoreDots = true
	case 't':
		o.ExtractRcpt = true
	case 'v':
		o.Verbose = true
	default: // -G, -U, -c, -m, -n, -x
		o.Ignored = append(o.Ignored, "-"+string(c))
	}
}

func (o *Options) option(c byte, val string) error {
	switch c {
	case 'b':
		switch val {
		case "m":
			o.Mode = ModeDeliver
		case "s":
			o.Mode = ModeSMTP
		case "p":
			o.Mode = ModeQueue
		case "i":
			o.Mode = ModeNewAliases
		case "v":
			o.Mode = ModeVerify
		case "d", "D":
			return usagef("-b%s (daemon mode) is not supported; start the daemon with: outbox serve", val)
		default:
			return usagef("unsupported: -b%s", val)
		}
	case 'f', 'r':
		o.Sender, o.SenderSet = val, true
	case 'F':
		o.FullName = val
	case 'N':
		n, err := parseNotify(val)
		if err != nil {
			return err
		}
		o.Notify = n
	case 'R':
		switch strings.ToLower(val) {
		case "full", "hdrs":
			o.Ret = strings.ToLower(val)
		default:
			return usagef("-R needs full or hdrs, not %q", val)
		}
	case 'V':
		if !printableASCII(val) || val == "" || len(val) > 100 {
			return usagef("-V needs an envelope ID of 1 to 100 printable ASCII characters")
		}
		o.EnvID = val
	case 'B':
		switch strings.ToUpper(val) {
		case "7BIT", "8BITMIME":
			o.BodyType = strings.ToUpper(val)
		default:
			return usagef("-B option needs 8BITMIME or 7BIT")
		}
	case 'C':
		o.Config, o.ConfigSet = val, true
	case 'o':
		switch {
		case val == "i":
			o.IgnoreDots = true
		case val == "A":
			return usagef("-oA requires pathname")
		default:
			// -oem, -oee, -odi, -odb, -odq, -om, -o7, -o8, -oA... change
			// nothing here.
			o.Ignored = append(o.Ignored, "-o"+val)
		}
	case 'q':
		switch {
		case val == "":
			o.Mode = ModeFlush
		case val[0] >= '0' && val[0] <= '9':
			o.QueueIntvl = val
		case val[0] == 'R' || val[0] == 'S' || val[0] == 'I':
			// Flushing one site or one message: flush everything.
			o.Mode = ModeFlush
		default:
			return usagef("-q%c is not implemented", val[0])
		}
	default: // -A, -L, -O, -X, -e, -h, -p
		o.Ignored = append(o.Ignored, "-"+string(c)+val)
	}
	return nil
}

// parseNotify checks a -N value: "never", or a comma-separated list of
// success, failure and delay. It returns the value in lower case, as the
// maildrop file and sendmail spell it.
func parseNotify(v string) (string, error) {
	n, err := dsn.ParseNotify(v)
	if err != nil || len(n) == 0 {
		return "", usagef("-N needs never, or a list of success, failure and delay, not %q", strings.ToLower(strings.TrimSpace(v)))
	}
	out := make([]string, len(n))
	for i, x := range n {
		out[i] = strings.ToLower(string(x))
	}
	return strings.Join(out, ","), nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}
