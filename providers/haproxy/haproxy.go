// Package haproxy is the load-balancer provider for HAProxy, driven through
// its runtime API (the admin-level stats socket, unix or TCP). Seen with the
// Debian HAProxy 2.6 package; the semantics relied on are those of the
// HAProxy 2.6 management guide (https://docs.haproxy.org/2.6/management.html)
// and were re-checked by this package's tests against the real binary.
//
// Weights map onto HAProxy as follows, so that a weight-0 server gets no new
// load-balanced traffic and `ready` alone restores it:
//
//   - weight N > 0: `set server BE/SRV weight N`, then `set server BE/SRV state ready`
//   - weight 0:     `set server BE/SRV state drain` (the user weight is kept)
//
// Drain is an admin flag: established sessions (WebSocket tunnels included)
// stay on the server until they end, which Backends reports as Sessions
// (show stat `scur`), and CloseSessions ends what is left at a drain's
// ceiling (`shutdown sessions server BE/SRV`). Drain, unlike maint, keeps
// health checks running and, per the HAProxy docs, still accepts persistent
// (cookie/stick) connections. Static balance algorithms (static-rr, first)
// only accept weights 0 and 100%: bind backends that use roundrobin or
// leastconn.
//
// Every command uses a fresh connection with the provider's timeout. A
// successful `set`/`shutdown` command replies with nothing but a newline;
// any text is HAProxy refusing the command and is returned as an error.
package haproxy

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// maxWeight is HAProxy's upper bound ("Absolute weight can only be between
// 0 and 256 inclusive", the reply of HAProxy 2.6 to `weight 300`).
const maxWeight = 256

// maxReply bounds what is read from one command (show stat of a large
// configuration is a few MB at most).
const maxReply = 64 << 20

// Provider is one HAProxy runtime API socket (one process or master CLI).
type Provider struct {
	name    string
	network string // unix or tcp
	address string
	timeout time.Duration
	log     *slog.Logger
}

var (
	_ providers.LoadBalancer  = (*Provider)(nil)
	_ providers.SessionCloser = (*Provider)(nil)
)

func init() {
	providers.RegisterLoadBalancer(spec.KindHAProxy, func(cfg spec.ProviderConfig, log *slog.Logger) (providers.LoadBalancer, error) {
		return New(*cfg.(*spec.HAProxyProvider), log)
	})
}

// New returns the provider for one configured HAProxy. cfg.Socket is a unix
// socket path (it contains a '/') or host:port of a TCP stats socket; the
// socket must be declared with `level admin`. A zero timeout means 5s.
func New(cfg spec.HAProxyProvider, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Default() // a configuration built in code gets the defaults of tandem.yaml
	p := &Provider{name: cfg.Name, timeout: cfg.Timeout.D(), log: log.With("provider", spec.KindHAProxy+"/"+cfg.Name)}
	switch {
	case strings.Contains(cfg.Socket, "/"):
		p.network, p.address = "unix", cfg.Socket
	case cfg.Socket != "":
		if _, port, err := net.SplitHostPort(cfg.Socket); err != nil || port == "" {
			return nil, fmt.Errorf("haproxy provider %q: socket %q must be a unix socket path (containing '/') or host:port", cfg.Name, cfg.Socket)
		}
		p.network, p.address = "tcp", cfg.Socket
	default:
		return nil, fmt.Errorf("haproxy provider %q: socket is required", cfg.Name)
	}
	return p, nil
}

// Backends lists the servers of the binding's backend as `show stat`
// reports them. Weight is the user weight, or 0 when the server is in drain
// or maint; Health comes from the server's status and last check
// (HealthUnknown for servers without checks); Sessions is scur.
func (p *Provider) Backends(ctx context.Context, b spec.Binding) ([]providers.Backend, error) {
	return p.servers(ctx, b)
}

// SetWeights applies weight changes to servers of the binding's backend
// (WeightChange.ID is the server name). Every change is checked first (the
// server exists, 0 <= weight <= 256, its address matches when given, some
// server keeps a weight); a bad change is a permanent error (NotFound,
// InvalidParameter, WouldZeroAll) and nothing is changed. Raises are applied
// before lowers, so the backend never passes through a state with fewer
// serving servers than at either end. It returns once `show stat` reads
// back the requested weights.
func (p *Provider) SetWeights(ctx context.Context, b spec.Binding, changes []providers.WeightChange) error {
	current, err := p.servers(ctx, b)
	if err != nil {
		return fmt.Errorf("setting weights on %s: %w", b.Key(), err)
	}
	if err := check(b, current, changes); err != nil {
		return fmt.Errorf("setting weights on %s: %w", b.Key(), err)
	}
	raises := slices.DeleteFunc(slices.Clone(changes), func(c providers.WeightChange) bool { return c.Weight == 0 })
	lowers := slices.DeleteFunc(slices.Clone(changes), func(c providers.WeightChange) bool { return c.Weight > 0 })
	for _, c := range raises {
		srv := b.Backend + "/" + c.ID
		if err := p.set(ctx, "set server "+srv+" weight "+strconv.Itoa(c.Weight)); err != nil {
			return fmt.Errorf("setting weights on %s: %w", b.Key(), err)
		}
		if err := p.set(ctx, "set server "+srv+" state ready"); err != nil {
			return fmt.Errorf("setting weights on %s: %w", b.Key(), err)
		}
	}
	for _, c := range lowers {
		if err := p.set(ctx, "set server "+b.Backend+"/"+c.ID+" state drain"); err != nil {
			return fmt.Errorf("setting weights on %s: %w", b.Key(), err)
		}
	}
	after, err := p.servers(ctx, b)
	if err != nil {
		return fmt.Errorf("reading back weights on %s: %w", b.Key(), err)
	}
	for _, c := range changes {
		if s := find(after, c.ID); s == nil || s.Weight != c.Weight {
			return fmt.Errorf("reading back weights on %s: server %s did not take weight %d (status %s)", b.Key(), c.ID, c.Weight, statusOf(s))
		}
	}
	p.log.Info("weights set", "action", "set-weights", "target", b.Key(), "changes", changes)
	return nil
}

// CloseSessions ends every session still open on the named servers
// (`shutdown sessions server`): the peers see their TCP connections closed
// without a WebSocket close frame. It returns the number of sessions the
// servers had just before (scur). Unknown servers are a permanent error and
// close nothing.
func (p *Provider) CloseSessions(ctx context.Context, b spec.Binding, ids []string) (int, error) {
	current, err := p.servers(ctx, b)
	if err != nil {
		return 0, fmt.Errorf("closing sessions on %s: %w", b.Key(), err)
	}
	var missing []string
	for _, id := range ids {
		if find(current, id) == nil {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return 0, fmt.Errorf("closing sessions on %s: %w", b.Key(), providers.Permanentf("NotFound",
			"backend %s has no server %s", b.Backend, strings.Join(missing, ", ")))
	}
	closed := 0
	for _, id := range ids {
		if err := p.set(ctx, "shutdown sessions server "+b.Backend+"/"+id); err != nil {
			return closed, fmt.Errorf("closing sessions on %s: %w", b.Key(), err)
		}
		closed += max(find(current, id).Sessions, 0)
	}
	p.log.Info("sessions closed", "action", "close-sessions", "target", b.Key(), "servers", ids, "sessions", closed)
	return closed, nil
}

func find(servers []providers.Backend, id string) *providers.Backend {
	for i := range servers {
		if servers[i].ID == id {
			return &servers[i]
		}
	}
	return nil
}

func statusOf(s *providers.Backend) string {
	if s == nil {
		return "missing"
	}
	return s.Status
}

// check validates changes against the backend's current servers, reporting
// every bad change at once: NotFound when a server is missing, else
// InvalidParameter, else WouldZeroAll when no server would keep a weight
// (design invariant 1; a drained server counts as 0).
func check(b spec.Binding, current []providers.Backend, changes []providers.WeightChange) error {
	var missing, invalid []error
	weights := map[string]int{}
	for _, s := range current {
		weights[s.ID] = s.Weight
	}
	seen := map[string]bool{}
	for _, c := range changes {
		s := find(current, c.ID)
		switch {
		case s == nil:
			missing = append(missing, fmt.Errorf("backend %s has no server %q", b.Backend, c.ID))
		case c.Weight < 0 || c.Weight > maxWeight:
			invalid = append(invalid, fmt.Errorf("server %s: weight %d is outside 0..%d", c.ID, c.Weight, maxWeight))
		case seen[c.ID]:
			invalid = append(invalid, fmt.Errorf("server %s is changed twice", c.ID))
		case c.IP != "" && s.IP != "" && (c.IP != s.IP || (c.Port != 0 && c.Port != s.Port)):
			invalid = append(invalid, fmt.Errorf("server %s is %s:%d in HAProxy, not %s:%d", c.ID, s.IP, s.Port, c.IP, c.Port))
		}
		seen[c.ID] = true
		weights[c.ID] = c.Weight
	}
	switch {
	case len(missing) > 0:
		return providers.Permanent("NotFound", errors.Join(append(missing, invalid...)...))
	case len(invalid) > 0:
		return providers.Permanent("InvalidParameter", errors.Join(invalid...))
	}
	for _, w := range weights {
		if w > 0 {
			return nil
		}
	}
	return providers.Permanentf("WouldZeroAll", "the change would leave every server of backend %s at weight 0", b.Backend)
}

// servers reads the binding's backend from `show stat` (backends and
// servers of every proxy; the filter by name would answer a missing proxy
// with text only).
func (p *Provider) servers(ctx context.Context, b spec.Binding) ([]providers.Backend, error) {
	if b.Kind() != spec.KindHAProxy || b.Backend == "" {
		return nil, providers.Permanentf("InvalidParameter", "binding %s is not an haproxy backend", b.Key())
	}
	reply, err := p.command(ctx, "show stat -1 6 -1")
	if err != nil {
		return nil, err
	}
	rows, err := parseStat(reply)
	if err != nil {
		return nil, fmt.Errorf("haproxy %s: show stat: %w", p.name, err)
	}
	var out []providers.Backend
	found := false
	for _, r := range rows {
		if r["pxname"] != b.Backend {
			continue
		}
		switch r["svname"] {
		case "BACKEND":
			found = true
		case "FRONTEND":
		default:
			out = append(out, toBackend(r))
		}
	}
	if !found {
		return nil, providers.Permanentf("NotFound", "haproxy %s has no backend %q", p.name, b.Backend)
	}
	// show stat says DOWN for a drained server whose checks fail (e.g. while
	// its app restarts for a deploy) and shows its user weight: only the
	// admin state tells that it is drained.
	reply, err = p.command(ctx, "show servers state "+b.Backend)
	if err != nil {
		return nil, err
	}
	admin, err := parseAdminStates(reply)
	if err != nil {
		return nil, fmt.Errorf("haproxy %s: show servers state %s: %w", p.name, b.Backend, err)
	}
	for i := range out {
		if admin[out[i].ID]&(srvAdminDrain|srvAdminMaint) != 0 {
			out[i].Weight = 0
		}
	}
	return out, nil
}

// Admin state flags of a server (HAProxy enum srv_admin: SRV_ADMF_DRAIN
// masks FDRAIN|IDRAIN, SRV_ADMF_MAINT masks FMAINT|IMAINT|RMAINT, and
// CMAINT is maintenance from the configuration).
const (
	srvAdminDrain = 0x18
	srvAdminMaint = 0x23 | 0x04
)

// parseAdminStates reads srv_admin_state by server name from `show servers
// state <backend>`: a format version line, a "# be_id be_name srv_id
// srv_name ..." header, then one space-separated row per server.
func parseAdminStates(reply string) (map[string]int, error) {
	lines := strings.Split(strings.TrimSpace(reply), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("unexpected reply %q", firstLine(reply))
	}
	header := strings.Fields(lines[1][2:])
	name, state := slices.Index(header, "srv_name"), slices.Index(header, "srv_admin_state")
	if name < 0 || state < 0 {
		return nil, fmt.Errorf("no srv_name or srv_admin_state column in %q", lines[1])
	}
	out := map[string]int{}
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) <= max(name, state) {
			continue
		}
		n, err := strconv.Atoi(f[state])
		if err != nil {
			return nil, fmt.Errorf("server %s: srv_admin_state %q is not a number", f[name], f[state])
		}
		out[f[name]] = n
	}
	return out, nil
}

// toBackend converts one show stat server row.
func toBackend(r map[string]string) providers.Backend {
	be := providers.Backend{ID: r["svname"], Status: r["status"], Sessions: -1}
	if host, port, err := net.SplitHostPort(r["addr"]); err == nil {
		be.IP = host
		be.Port, _ = strconv.Atoi(port)
	}
	if n, err := strconv.Atoi(r["scur"]); err == nil {
		be.Sessions = n
	}
	w := r["uweight"] // the user weight (2.6); older versions only have the effective weight
	if w == "" {
		w = r["weight"]
	}
	be.Weight, _ = strconv.Atoi(w) // 0 in drain or maint: see servers
	be.Health = health(be.Status, r["check_status"])
	be.Reason = reason(be.Health, r)
	return be
}

// health derives a server's health. The status column says DOWN once the
// checks declared it down; in drain or maint the status hides that, so the
// last check result decides (L4OK/L6OK/L7OK/L7OKC pass). A server with
// checks that has not passed them yet is initial: INI (no check has run
// yet), or DOWN with a passing last check (rising: "DOWN 1/2", not yet
// past rise). Servers without checks ("no check") are HealthUnknown
// (https://docs.haproxy.org/2.8/management.html, "show stat": status,
// check_status).
func health(status, check string) providers.Health {
	check = strings.TrimPrefix(check, "* ")
	passed := check == "L4OK" || check == "L6OK" || check == "L7OK" || check == "L7OKC"
	switch {
	case status == "no check" || check == "":
		return providers.HealthUnknown
	case check == "INI", strings.HasPrefix(status, "DOWN") && passed:
		return providers.HealthInitial
	case strings.HasPrefix(status, "DOWN"):
		return providers.HealthUnhealthy
	case passed:
		return providers.HealthHealthy
	}
	return providers.HealthUnhealthy
}

// reason is HAProxy's account of a server that is not healthy: the last
// check's status and its description (check_status "L4CON", last_chk
// "Connection refused").
func reason(h providers.Health, r map[string]string) string {
	if h == providers.HealthHealthy || h == providers.HealthUnknown {
		return ""
	}
	out := strings.TrimPrefix(r["check_status"], "* ")
	if d := r["last_chk"]; d != "" {
		out += " " + d
	}
	return out
}

// parseStat parses show stat CSV ("# pxname,svname,...") into rows keyed by
// column name.
func parseStat(reply string) ([]map[string]string, error) {
	if !strings.HasPrefix(reply, "# ") {
		return nil, fmt.Errorf("unexpected reply %q", firstLine(reply))
	}
	r := csv.NewReader(strings.NewReader(reply[2:]))
	r.FieldsPerRecord = -1
	records, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	header := records[0]
	rows := make([]map[string]string, 0, len(records)-1)
	for _, rec := range records[1:] {
		row := make(map[string]string, len(header))
		for i, v := range rec {
			if i < len(header) {
				row[header[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// ReplyError is HAProxy refusing a command: its text reply.
type ReplyError struct {
	Command string
	Reply   string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("haproxy refused %q: %s", e.Command, e.Reply)
}

// set runs a command whose success reply is empty. A text reply is a
// permanent error: the command was checked before, so HAProxy refusing it
// means a configuration problem (a static balance algorithm, a server
// removed by a reload) that retrying cannot fix.
func (p *Provider) set(ctx context.Context, cmd string) error {
	reply, err := p.command(ctx, cmd)
	if err != nil {
		return err
	}
	if text := strings.TrimSpace(reply); text != "" {
		return providers.Permanent("HAProxyRefused", &ReplyError{Command: cmd, Reply: text})
	}
	p.log.Debug("haproxy command", "action", "runtime-api", "command", cmd)
	return nil
}

// command sends one command on a fresh connection and reads the reply to
// EOF (the runtime API closes non-interactive connections after replying).
func (p *Provider) command(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, p.network, p.address)
	if err != nil {
		return "", fmt.Errorf("haproxy %s: connecting to runtime API %s: %w", p.name, p.address, err)
	}
	defer conn.Close()
	// The context (which carries the timeout) is the only deadline, so an
	// I/O error it causes always finds ctx.Err() set.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy %s: %s: %w", p.name, cmd, orCtx(ctx, err))
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(conn, maxReply+1)); err != nil {
		return "", fmt.Errorf("haproxy %s: %s: %w", p.name, cmd, orCtx(ctx, err))
	}
	if buf.Len() > maxReply {
		return "", fmt.Errorf("haproxy %s: %s: the reply exceeds %d MiB", p.name, cmd, maxReply>>20)
	}
	return buf.String(), nil
}

// orCtx prefers the context's error (deadline, cancellation) over the I/O
// error it caused.
func orCtx(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
