// Command sendmail is Outbox's drop-in /usr/sbin/sendmail. Installed under
// the names mailq and newaliases (symlinks) it lists the queue or checks
// the aliases instead; see package sendmailshim.
//
// It is built twice: with -tags shimlean as sendmail, which submits to the
// running daemon and links nothing else, and without as outbox-sendmail,
// the whole shim, to which sendmail hands every other call.
package main

import (
	"os"

	"github.com/outbox-mta/outbox/sendmailshim"
)

func main() {
	os.Exit(sendmailshim.Main(os.Args, os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
