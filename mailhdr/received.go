package mailhdr

import (
	"fmt"
	"time"
)

// MaxHeaderSection bounds the header section the daemon reads into memory
// to rewrite, the Received field it adds included; the body streams
// behind it. The shim checks a maildrop file against the same bound, so
// that what it stores is what the daemon will import.
const MaxHeaderSection = 1 << 20

// LocalReceived is the Received field the daemon adds to a local
// submission (the shim's socket or a maildrop file): who is the uid, with
// its user name where known, id the queue ID. The format is the one the
// daemon has always written, which filters may match; the shim measures
// it to know the size of the header section the daemon will store.
func LocalReceived(host, who, id string, now time.Time) string {
	return fmt.Sprintf("Received: by %s (Outbox, from userid %s)\r\n\tid %s; %s\r\n", host, who, id, now.Format(time.RFC1123Z))
}
