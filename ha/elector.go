// Package ha keeps one Tandem daemon acting at a time (design invariant 6).
//
// Without HA, Lock keeps a second daemon off the same state directory. With
// ha: {etcd: [...]}, replicas elect a leader through an etcd election
// (client/v3/concurrency); only the leader acts, it stops the moment its
// lease is lost, and every journal write is a transaction fenced by the
// revision of its election key, so a deposed leader cannot write even
// before it notices. The journal lives in etcd, so a new leader resumes the
// transition the old one started.
package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// DialTimeout bounds authentication when the client is created (etcd's
// client connects lazily; see clientv3.Config.DialTimeout).
const DialTimeout = 5 * time.Second

// Elector campaigns for leadership of the replicas that share an etcd
// prefix.
type Elector struct {
	client   *clientv3.Client
	prefix   string
	ttl      int // seconds
	identity string
	log      *slog.Logger
}

// Identity names this process among the replicas: host/pid.
func Identity() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// NewElector returns an elector for cfg; identity is what Leader reports
// while this replica leads (see Identity). Credentials are read from the
// environment variables cfg names. The lease TTL is rounded up to whole
// seconds, the unit of etcd leases. Close releases the client.
func NewElector(cfg spec.HAConfig, identity string, log *slog.Logger) (*Elector, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case len(cfg.Etcd) == 0:
		return nil, errors.New("ha.etcd: needs at least one endpoint")
	case cfg.LeaseTTL.D() < time.Second:
		return nil, fmt.Errorf("ha.leaseTTL: must be at least 1s, got %s", cfg.LeaseTTL.D())
	case identity == "":
		return nil, errors.New("ha: the replica identity is empty")
	}
	user, err := spec.SecretFromEnv("ha.usernameEnv", cfg.UsernameEnv)
	if err != nil {
		return nil, err
	}
	password, err := spec.SecretFromEnv("ha.passwordEnv", cfg.PasswordEnv)
	if err != nil {
		return nil, err
	}
	if user.Empty() != password.Empty() {
		return nil, errors.New("ha: set both usernameEnv and passwordEnv, or neither when etcd auth is off")
	}
	ccfg := clientv3.Config{
		Endpoints:   cfg.Etcd,
		DialTimeout: DialTimeout,
		Username:    user.Reveal(),
		Password:    password.Reveal(),
		Logger:      zap.NewNop(),
	}
	if cfg.TLS().Set() || slices.ContainsFunc(cfg.Etcd, func(e string) bool { return strings.HasPrefix(e, "https://") }) {
		// Passwords and the auth token then travel encrypted, and the
		// server is verified with caFile (default: the system's roots).
		if ccfg.TLS, err = cfg.TLS().ClientConfig("ha"); err != nil {
			return nil, err
		}
	}
	client, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(cfg.Etcd, ","), err)
	}
	return &Elector{
		client:   client,
		prefix:   strings.TrimSuffix(cfg.Prefix, "/"),
		ttl:      int(math.Ceil(cfg.LeaseTTL.D().Seconds())),
		identity: identity,
		log:      log.With("identity", identity),
	}, nil
}

// Close closes the etcd client. Call it after Run has returned.
func (e *Elector) Close() error { return e.client.Close() }

// Leader returns the identity of the replica that leads, or "" when none
// does.
func (e *Elector) Leader(ctx context.Context) (string, error) {
	// What concurrency.Election.Leader reads, without needing a session.
	resp, err := e.client.Get(ctx, e.prefix+"/leader/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("asking etcd who leads %s: %w", e.prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// Run campaigns until ctx ends. Each time this replica is elected it calls
// lead with a context that is cancelled the moment leadership ends (the
// lease is lost, a fenced write found another leader) or ctx ends; the
// Leadership's own Context tells the two apart. When
// lead returns, leadership is released at once (so another replica takes
// over without waiting for the TTL) and Run campaigns again; after a
// failure (lead's error, etcd unreachable) it waits with backoff first.
//
// Run returns nil when ctx ends, or an error when etcd refuses the
// credentials or their permissions on the prefix, which retrying cannot
// fix.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, l *Leadership) error) error {
	backoff := reconcile.Backoff{Base: 500 * time.Millisecond, Max: time.Duration(e.ttl) * time.Second}
	failures := 0
	for ctx.Err() == nil {
		err := e.term(ctx, lead)
		switch {
		case ctx.Err() != nil:
		case refused(err):
			return fmt.Errorf("campaigning under %s: %w", e.prefix, err)
		case err != nil:
			failures++
			e.log.Warn("leadership term failed", "error", err)
			t := time.NewTimer(backoff.Delay(failures))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		default:
			failures = 0
		}
	}
	return nil
}

// refused reports errors of etcd's authentication and authorisation.
func refused(err error) bool {
	for _, r := range []error{rpctypes.ErrPermissionDenied, rpctypes.ErrAuthFailed, rpctypes.ErrUserEmpty} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// term is one campaign and, if it is won, one leadership.
//
// Until it is elected the session ends with ctx. Once elected, the term
// (Leadership.Context) ends only when the lease is lost, a fenced write finds
// another leader, or lead returns: a shutdown (ctx ending) asks lead to
// stop, and the lease is kept alive until it has, so that a step finishing
// within the shutdown grace is still this leader's, fenced and journaled.
func (e *Elector) term(ctx context.Context, lead func(context.Context, *Leadership) error) error {
	sessCtx, cancelSess := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSess()
	stopWithCtx := context.AfterFunc(ctx, cancelSess)
	defer stopWithCtx()
	sess, err := concurrency.NewSession(e.client, concurrency.WithTTL(e.ttl), concurrency.WithContext(sessCtx))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("opening an etcd session: %w", err)
	}
	defer e.release(ctx, sess)
	election := concurrency.NewElection(sess, e.prefix+"/leader")
	// Campaigning with the session's context gives up if the lease is lost
	// meanwhile (the candidate key went with it), or ctx ends.
	if err := election.Campaign(sess.Ctx(), e.identity); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaigning for %s/leader: %w", e.prefix, err)
	}
	stopWithCtx() // elected: the lease now lives as long as the term
	tctx, end := context.WithCancelCause(context.WithoutCancel(ctx))
	defer end(nil)
	stopLease := context.AfterFunc(sess.Ctx(), func() { end(errLeaseLost) })
	defer stopLease()
	lctx, stopActing := context.WithCancelCause(tctx)
	defer stopActing(nil)
	stopOnShutdown := context.AfterFunc(ctx, func() { stopActing(context.Cause(ctx)) })
	defer stopOnShutdown()
	l := &Leadership{ctx: tctx, end: end, client: e.client, key: election.Key(), rev: election.Rev(), journal: e.prefix + "/journal/"}
	log := e.log.With("key", l.key)
	log.Info("elected leader")
	err = lead(lctx, l)
	cause := context.Cause(tctx)
	end(errSteppedDown)
	switch {
	case cause != nil:
		log.Warn("leadership lost", "cause", cause)
	case ctx.Err() != nil:
		log.Info("stepping down: shutting down")
	case err != nil:
		return fmt.Errorf("leading: %w", err)
	default:
		log.Info("stepping down")
	}
	return nil
}

// release gives leadership (or candidacy) up at once by revoking the lease,
// which deletes the election key; if that fails the lease expires after
// its TTL.
func (e *Elector) release(ctx context.Context, sess *concurrency.Session) {
	sess.Orphan()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(e.ttl)*time.Second)
	defer cancel()
	if _, err := e.client.Revoke(rctx, sess.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.log.Warn("releasing the etcd lease (it expires by itself)", "error", err)
	}
}
