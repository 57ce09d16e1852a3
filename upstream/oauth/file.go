package oauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/outbox-mta/outbox/internal/durable"
)

// tokenFile is the JSON kept in Config.TokenFile.
type tokenFile struct {
	Flow         string    `json:"flow"`
	ClientID     string    `json:"client_id,omitempty"`
	TokenURL     string    `json:"token_url,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	Scope        string    `json:"scope,omitempty"`
	Saved        time.Time `json:"saved"`
}

// stamp identifies a version of a file cheaply.
type stamp struct {
	exists bool
	mod    time.Time
	size   int64
	ino    uint64
}

func (st stamp) String() string {
	return fmt.Sprintf("%v/%d/%d/%d", st.exists, st.mod.UnixNano(), st.size, st.ino)
}

func statOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	st := stamp{exists: true, mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

func (s *Source) fileChangedLocked() bool {
	return s.cfg.TokenFile != "" && statOf(s.cfg.TokenFile) != s.fileStamp
}

// loadLocked reads the token file. A cache written for another client or
// endpoint is ignored: its tokens would be refused.
func (s *Source) loadLocked() {
	if s.cfg.TokenFile == "" {
		return
	}
	st := statOf(s.cfg.TokenFile)
	s.fileStamp = st
	b, err := os.ReadFile(s.cfg.TokenFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("oauth2: cannot read the token file", "file", s.cfg.TokenFile, "error", err.Error())
		}
		return
	}
	var tf tokenFile
	if err := json.Unmarshal(b, &tf); err != nil {
		s.log.Warn("oauth2: the token file is not valid JSON; ignoring it", "file", s.cfg.TokenFile)
		return
	}
	if tf.ClientID != s.cfg.ClientID || tf.TokenURL != s.cfg.TokenURL {
		s.log.Warn("oauth2: the token file was written for another client_id or token_url; ignoring it",
			"file", s.cfg.TokenFile, "fix", fmt.Sprintf("run `outbox oauth login %s` if this upstream uses refresh_token", s.cfg.Name))
		return
	}
	tok := &oauth2.Token{AccessToken: tf.AccessToken, TokenType: tf.TokenType, RefreshToken: tf.RefreshToken, Expiry: tf.Expiry}
	if tf.Scope != "" {
		tok = tok.WithExtra(map[string]any{"scope": tf.Scope})
	}
	s.setTokenLocked(tok)
}

// saveLocked writes the current token to the token file.
func (s *Source) saveLocked() error {
	if s.cfg.TokenFile == "" || s.tok == nil {
		return nil
	}
	tf := tokenFile{Flow: s.cfg.Flow, ClientID: s.cfg.ClientID, TokenURL: s.cfg.TokenURL,
		AccessToken: s.tok.AccessToken, TokenType: s.tok.TokenType, RefreshToken: s.tok.RefreshToken,
		Expiry: s.tok.Expiry, Saved: s.cfg.Now().UTC()}
	if sc, ok := s.tok.Extra("scope").(string); ok {
		tf.Scope = sc
	}
	b, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.cfg.TokenFile, append(b, '\n')); err != nil {
		return err
	}
	s.fileStamp = statOf(s.cfg.TokenFile)
	return nil
}

// writeAtomic replaces path with data: a temporary file in the same
// folder, mode 0600, fsynced, renamed over path, then the folder fsynced,
// so a crash leaves the old file or the new one, never half of either.
//
// When root writes (`outbox oauth login`, `outbox test-upstream`), the
// file keeps the owner of the file it replaces, or takes the folder's:
// the daemon runs as its own user and must still read and rotate it.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600 whatever the umask; say so anyway.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if os.Geteuid() == 0 {
		if uid, gid, ok := ownerFor(path, dir); ok {
			if err := f.Chown(uid, gid); err != nil {
				f.Close()
				return err
			}
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// ownerFor returns the owner the token file should have: that of the
// file being replaced, else that of its folder.
func ownerFor(path, dir string) (uid, gid int, ok bool) {
	for _, p := range []string{path, dir} {
		if fi, err := os.Stat(p); err == nil {
			if st, isStat := fi.Sys().(*syscall.Stat_t); isStat {
				return int(st.Uid), int(st.Gid), true
			}
		}
	}
	return 0, 0, false
}
