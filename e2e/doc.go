// Package e2e holds the end-to-end tests of Outbox: they build the outbox
// binary, run it as a subprocess on loopback in a temporary folder, drive it
// with real SMTP clients, kill it at random moments and check what the
// spool and a test upstream hold afterwards.
package e2e
