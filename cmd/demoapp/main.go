// Command demoapp is the demo application of Tandem's demo fleet (see
// internal/demoapp for its endpoints): an HTTP and WebSocket echo service
// that reports its version, drains on request and shuts down gracefully on
// SIGTERM or SIGINT. With --nacos-addr it registers itself in Nacos as an
// ephemeral instance with metadata version=<version> and group=<group>, and
// deregisters before it shuts down.
//
//	demoapp --listen 127.0.0.1:9001 --name a1 --group A --version 1.0.0 \
//	        [--nacos-addr 127.0.0.1:8848 --nacos-service demo] [--fault 1.1.0=status:500@/echo]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandemhq/tandem/internal/demoapp"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	var (
		o            demoapp.Options
		nacosAddr    = fs.String("nacos-addr", "", "Nacos server host:port (HTTP port; gRPC is port+1000) to register in")
		nacosService = fs.String("nacos-service", "", "Nacos service name to register as (required with --nacos-addr)")
	)
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "host:port to serve on")
	fs.StringVar(&o.Name, "name", "", "instance name, sent as X-Backend (default: the listen address)")
	fs.StringVar(&o.Version, "version", "", "version to report (required)")
	fs.StringVar(&o.Group, "group", "", "group to report (A or B)")
	fs.DurationVar(&o.DrainJitter, "drain-jitter", 0, "upper bound of the random delay before each WebSocket is closed on POST /drain (default 500ms)")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", 0, "how long to keep serving with /healthz at 503 after SIGTERM")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 0, "bound of the graceful shutdown (default 10s)")
	fs.Func("fault", "make a version misbehave while /healthz stays green: VERSION=status:CODE[@PATH] or VERSION=delay:DURATION[@PATH] (path default /echo; repeatable)", func(s string) error {
		v, f, err := demoapp.ParseFault(s)
		if err != nil {
			return err
		}
		if o.Faults == nil {
			o.Faults = map[string]demoapp.Fault{}
		}
		o.Faults[v] = f
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Version == "" {
		return errors.New("--version is required")
	}
	if (*nacosAddr == "") != (*nacosService == "") {
		return errors.New("--nacos-addr and --nacos-service go together")
	}
	if o.Name == "" {
		o.Name = o.Listen
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))

	signals, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	app, err := demoapp.Start(context.Background(), o)
	if err != nil {
		return err
	}
	deregister := func() {}
	if *nacosAddr != "" {
		host, _, _ := net.SplitHostPort(o.Listen) // as configured: the listener reports [::] for 0.0.0.0
		if deregister, err = registerNacos(*nacosAddr, *nacosService, host, app.Instance().Port, o, o.Log); err != nil {
			return errors.Join(err, app.Stop())
		}
	}
	select {
	case <-signals.Done():
	case <-app.Done():
	}
	deregister() // leave consumers' view before the shutdown starts
	return app.Stop()
}
