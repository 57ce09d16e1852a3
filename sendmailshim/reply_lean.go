//go:build shimlean

package sendmailshim

// clientReply has nothing to read here: every reply comes from submitConn.
func clientReply(err error) (*replyError, bool) { return nil, false }
