package sendmailshim

import (
	"github.com/outbox-mta/outbox/config"
)

// shimConfig is the configuration as the shim holds it: all of it, read
// with package config.
type shimConfig = config.Config

func (s *shim) hostname() string      { return s.cfg.Hostname }
func (s *shim) submitSocket() string  { return s.cfg.SubmitSocket() }
func (s *shim) maxMessageSize() int64 { return s.cfg.Limits.MaxMessageSize }

func (s *shim) dispatch() error {
	if s.opts.QueueIntvl != "" && s.opts.Mode != ModeFlush {
		// -q15m asks a daemon to run the queue every 15 minutes; ours
		// does that on its own schedule.
		return nil
	}
	if err := s.loadConfig(); err != nil {
		return err
	}
	switch s.opts.Mode {
	case ModeQueue:
		return s.mailq()
	case ModeNewAliases:
		return s.newaliases()
	case ModeFlush:
		return s.flush()
	case ModeSMTP:
		if err := s.identify(); err != nil {
			return err
		}
		return s.serveSMTP()
	case ModeVerify:
		return s.verify()
	}
	if err := s.identify(); err != nil {
		return err
	}
	return s.deliver()
}

func (s *shim) loadConfig() error {
	s.cfgPath = s.opts.Config
	if s.cfgPath == "" {
		s.cfgPath = s.getenv("OUTBOX_CONFIG")
	}
	if s.cfgPath == "" {
		s.cfgPath = config.DefaultPath
	}
	// Placeholders in the packaged relay.hcl keep the daemon from
	// starting, not the shim: mail waits in the maildrop folder until the
	// configuration is filled in.
	cfg, err := config.LoadAllowingPlaceholders(s.cfgPath)
	if err != nil {
		return fail(ExitConfig, "%v", err)
	}
	s.cfg = cfg
	return nil
}
