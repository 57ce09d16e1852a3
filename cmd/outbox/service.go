package main

import (
	"fmt"
	"path/filepath"

	"github.com/kardianos/service"

	"github.com/outbox-mta/outbox/config"
)

func cmdService(a *app, args []string) int {
	fs := a.flags("service")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	path, err := filepath.Abs(config.Locate(a.configFlag))
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox:", err)
		return exitConfig
	}
	svc, err := service.New(program{}, &service.Config{
		Name:        "outbox",
		DisplayName: "Outbox mail relay",
		Description: "Sendmail-compatible local mail relay: spools mail and relays it upstream.",
		Arguments:   []string{"serve", "--config", path},
		Option: service.KeyValue{
			"Restart":           "on-failure",
			"SuccessExitStatus": "0",
		},
	})
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox:", err)
		return exitUnavailable
	}
	action := fs.Arg(0)
	if action == "status" {
		st, err := svc.Status()
		if err != nil {
			fmt.Fprintln(a.stderr, "outbox: service status:", err)
			return exitUnavailable
		}
		names := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}
		s, ok := names[st]
		if !ok {
			s = "unknown"
		}
		fmt.Fprintln(a.stdout, "outbox service:", s)
		return exitOK
	}
	if err := service.Control(svc, action); err != nil {
		fmt.Fprintf(a.stderr, "outbox: service %s: %v (valid actions: %v, status)\n", action, err, service.ControlAction)
		return exitUnavailable
	}
	fmt.Fprintf(a.stdout, "outbox service: %s done\n", action)
	return exitOK
}
