// Command sendmail is Outbox's drop-in /usr/sbin/sendmail. Installed under
// the names mailq and newaliases (symlinks) it lists the queue or checks
// the aliases instead; see package sendmailshim.
package main

import (
	"os"

	"github.com/outbox-mta/outbox/sendmailshim"
)

func main() {
	os.Exit(sendmailshim.Main(os.Args, os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
