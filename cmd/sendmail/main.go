// Command sendmail is Outbox's whole sendmail shim, installed as
// /usr/sbin/outbox-sendmail. /usr/sbin/sendmail, a small C program
// (cmd/sendmail-c) that sends the call to the daemon's sendmail socket,
// hands it every call the daemon does not take there: mailq and
// newaliases (by the name it runs under), -bs, -bv, -q, a configuration
// named with -C or OUTBOX_CONFIG, the daemon down. It works alone as a
// sendmail too; see package sendmailshim.
package main

import (
	"os"

	"github.com/outbox-mta/outbox/sendmailshim"
)

func main() {
	os.Exit(sendmailshim.Main(os.Args, os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
