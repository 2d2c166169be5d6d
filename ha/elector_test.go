package ha

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// replica runs an Elector as a daemon would, with lead as its work.
type replica struct {
	name   string
	e      *Elector
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
	once   sync.Once
}

func startReplica(t testing.TB, cfg spec.HAConfig, name string, lead func(context.Context, *Leadership) error) *replica {
	t.Helper()
	e, err := NewElector(cfg, name, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, e: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = e.Run(ctx, lead)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop shuts the replica down as a daemon does on SIGTERM.
func (r *replica) stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.e.Close()
	})
}

// crash kills the replica: its connection to etcd drops without a word, so
// its lease lives on in etcd until the TTL runs out. What is left of it
// (its Run, failing to reach etcd) is stopped at cleanup.
func (r *replica) crash() {
	r.e.client.Close()
	r.cancel()
}

// term is one leadership as lead saw it.
type term struct {
	who    string
	l      *Leadership
	ctx    context.Context
	resign chan struct{} // closing it makes lead return
}

// announce hands a new term to the test; false if it ended first.
func announce(ctx context.Context, terms chan<- term, who string, l *Leadership) (term, bool) {
	tm := term{who: who, l: l, ctx: ctx, resign: make(chan struct{})}
	select {
	case terms <- tm:
		return tm, true
	case <-ctx.Done():
		return tm, false
	}
}

// reporting is a lead function that announces each term and leads until
// the term ends or the test makes it resign.
func reporting(who string, terms chan<- term) func(context.Context, *Leadership) error {
	return func(ctx context.Context, l *Leadership) error {
		if tm, ok := announce(ctx, terms, who, l); ok {
			select {
			case <-ctx.Done():
			case <-tm.resign:
			}
		}
		return nil
	}
}

// pair starts replicas a and b that report their terms.
func pair(t testing.TB, cfg spec.HAConfig) (map[string]*replica, <-chan term) {
	terms := make(chan term)
	return map[string]*replica{
		"a": startReplica(t, cfg, "a", reporting("a", terms)),
		"b": startReplica(t, cfg, "b", reporting("b", terms)),
	}, terms
}

// receive waits for a value; the bound only keeps a broken test from
// hanging.
func receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting")
	}
	panic("unreachable")
}

// eventually polls an observable condition, within a bound.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, msg)
}

func other(name string) string {
	if name == "a" {
		return "b"
	}
	return "a"
}

func TestOnlyOneOfTwoElectorsLeadsAndTheOtherTakesOverWhenItStepsDown(t *testing.T) {
	cfg := haConfig(t, time.Second)
	ctx := t.Context()
	replicas, terms := pair(t, cfg)
	first := receive(t, terms)
	require.NoError(t, first.l.Check(ctx))
	// The other one is a candidate: its key waits behind the leader's.
	eventually(t, func() bool {
		resp, err := testRoot.Get(ctx, cfg.Prefix+"/leader/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	}, "both replicas campaign")
	for _, r := range replicas {
		leader, err := r.e.Leader(ctx)
		require.NoError(t, err)
		require.Equal(t, first.who, leader, "as %s sees it", r.name)
	}
	select {
	case tm := <-terms:
		t.Fatalf("%s leads while %s does", tm.who, first.who)
	default:
	}

	replicas[first.who].stop()
	second := receive(t, terms)
	require.Equal(t, other(first.who), second.who)
	require.ErrorIs(t, first.l.Check(ctx), ErrNotLeader)
	require.NoError(t, second.l.Check(ctx))
	leader, err := replicas[second.who].e.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, second.who, leader)

	replicas[second.who].stop()
	require.ErrorIs(t, second.l.Check(ctx), ErrNotLeader)
	for _, r := range replicas {
		require.NoError(t, r.err, "Run returns nil when its context ends")
	}
}

func TestCrashedLeaderIsReplacedWhenItsLeaseExpires(t *testing.T) {
	cfg := haConfig(t, time.Second)
	ctx := t.Context()
	replicas, terms := pair(t, cfg)
	first := receive(t, terms)
	replicas[first.who].crash()
	eventually(t, func() bool { return first.ctx.Err() != nil }, "the crashed leader's context is cancelled")
	require.ErrorIs(t, first.l.Check(ctx), ErrNotLeader, "a crashed leader's fence is closed")

	second := receive(t, terms)
	require.Equal(t, other(first.who), second.who)
	require.NoError(t, second.l.Store().Save(ctx, reconcile.State{Service: "svc"}))
}

func TestDeposedLeaderCannotWriteEvenBeforeItNotices(t *testing.T) {
	for _, tc := range []struct {
		name   string
		depose func(t *testing.T, l *Leadership)
	}{
		{"lease expired while the leader was paused", func(t *testing.T, l *Leadership) {
			resp, err := testRoot.Get(t.Context(), l.key)
			require.NoError(t, err)
			require.Len(t, resp.Kvs, 1)
			_, err = testRoot.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
			require.NoError(t, err)
		}},
		{"election key deleted behind the leader's back", func(t *testing.T, l *Leadership) {
			_, err := testRoot.Delete(t.Context(), l.key)
			require.NoError(t, err)
			require.NoError(t, l.Check(t.Context()), "its lease is alive: the leader has not noticed")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := haConfig(t, time.Second)
			ctx := t.Context()
			_, terms := pair(t, cfg)
			first := receive(t, terms)
			// The first leader is paused: it does nothing while it is deposed and another takes over.
			tc.depose(t, first.l)
			second := receive(t, terms)
			require.Equal(t, other(first.who), second.who)
			mine := reconcile.State{Service: "svc", Applied: &reconcile.Applied{Version: "by " + second.who}}
			require.NoError(t, second.l.Store().Save(ctx, mine))

			// The first one resumes and writes: the transaction refuses it.
			err := first.l.Store().Save(context.Background(), reconcile.State{Service: "svc", Applied: &reconcile.Applied{Version: "by " + first.who}})
			require.ErrorIs(t, err, ErrNotLeader)
			require.ErrorIs(t, first.l.Check(ctx), ErrNotLeader, "a refused write ends the term")
			eventually(t, func() bool { return first.ctx.Err() != nil }, "the deposed leader's context is cancelled")
			got, err := second.l.Store().Load(ctx, "svc")
			require.NoError(t, err)
			require.Equal(t, mine, got)
		})
	}
}

// soleLeader starts one replica and returns its leadership.
func soleLeader(t *testing.T, cfg spec.HAConfig) *Leadership {
	terms := make(chan term)
	startReplica(t, cfg, "a", reporting("a", terms))
	return receive(t, terms).l
}

func TestJournalRoundTripsThroughEtcd(t *testing.T) {
	cfg := haConfig(t, time.Second)
	ctx := t.Context()
	store := soleLeader(t, cfg).Store()

	empty, err := store.Load(ctx, "user-service")
	require.NoError(t, err)
	require.Equal(t, reconcile.State{Service: "user-service"}, empty, "a service never journaled starts empty")

	at := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	st := reconcile.State{
		Service: "user-service",
		Transition: &reconcile.Transition{ID: "t-1", Kind: reconcile.KindRelease, From: spec.GroupA, To: spec.GroupB,
			Version: "2.5.0", FromVersion: "2.4.0", Revision: "abc123", Phase: reconcile.PhaseDrain, Started: at, PhaseSince: at.Add(time.Minute),
			PhaseTimes: map[reconcile.Phase]time.Duration{reconcile.PhasePrepare: 42 * time.Second}, Deploy: reconcile.DeployProgress{Started: true, Done: true},
			Served: true, Drain: reconcile.DrainProgress{ZeroSince: at.Add(90 * time.Second)}, DesiredActive: spec.GroupB, DesiredVersion: "2.5.0"},
		Applied: &reconcile.Applied{Active: spec.GroupA, Version: "2.4.0", Revision: "abc122", At: at.Add(-time.Hour)},
	}
	require.NoError(t, store.Save(ctx, st))
	got, err := store.Load(ctx, "user-service")
	require.NoError(t, err)
	require.Equal(t, st, got)

	resp, err := testRoot.Get(ctx, cfg.Prefix+"/journal/user-service")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "the journal is one key per service under <prefix>/journal/")
}

func TestJournalRefusesWhatItCannotTrust(t *testing.T) {
	cfg := haConfig(t, time.Second)
	ctx := t.Context()
	store := soleLeader(t, cfg).Store()

	for _, tc := range []struct {
		name, service, value, want string
	}{
		{"invalid JSON stalls naming the key", "garbled", "{not json", "/journal/garbled in etcd is not valid JSON"},
		{"another service's state stalls naming both", "mixed", `{"service":"other"}`, `holds the state of service "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testRoot.Put(ctx, cfg.Prefix+"/journal/"+tc.service, tc.value)
			require.NoError(t, err)
			_, err = store.Load(ctx, tc.service)
			var stalled *reconcile.StalledError
			require.ErrorAs(t, err, &stalled)
			require.Equal(t, "CorruptJournal", stalled.Reason)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	t.Run("a name that is not one key segment is refused", func(t *testing.T) {
		_, err := store.Load(ctx, "../leader")
		require.ErrorContains(t, err, `invalid service name "../leader"`)
		err = store.Save(ctx, reconcile.State{Service: "a/b"})
		require.ErrorContains(t, err, `invalid service name "a/b"`)
	})
}

func TestNewElectorRejectsBadConfigurationNamingTheField(t *testing.T) {
	t.Setenv("TANDEM_TEST_ONLY_USER", "someone")
	good := spec.HAConfig{Etcd: []string{etcdEndpoint}, Prefix: "/test/x", LeaseTTL: spec.Duration(2 * time.Second)}
	for _, tc := range []struct {
		name     string
		change   func(*spec.HAConfig)
		identity string
		want     string
	}{
		{"no endpoint", func(c *spec.HAConfig) { c.Etcd = nil }, "a", "ha.etcd: needs at least one endpoint"},
		{"a TTL under a second", func(c *spec.HAConfig) { c.LeaseTTL = spec.Duration(500 * time.Millisecond) }, "a", "ha.leaseTTL: must be at least 1s, got 500ms"},
		{"no identity", func(*spec.HAConfig) {}, "", "identity is empty"},
		{"an unset password variable", func(c *spec.HAConfig) { c.UsernameEnv, c.PasswordEnv = "TANDEM_TEST_ONLY_USER", "TANDEM_TEST_UNSET" },
			"a", "ha.passwordEnv: environment variable TANDEM_TEST_UNSET is not set"},
		{"a user without a password", func(c *spec.HAConfig) { c.UsernameEnv = "TANDEM_TEST_ONLY_USER" }, "a", "set both usernameEnv and passwordEnv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			_, err := NewElector(cfg, tc.identity, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestCredentialsComeFromTheEnvironmentAndNeverShow(t *testing.T) {
	ctx := t.Context()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	t.Run("wrong password is refused at once", func(t *testing.T) {
		t.Setenv("TANDEM_TEST_WRONG_PASSWORD", "wrong-pw-d41d8cd9")
		cfg := haConfig(t, time.Second)
		cfg.PasswordEnv = "TANDEM_TEST_WRONG_PASSWORD"
		_, err := NewElector(cfg, "a", log)
		require.ErrorContains(t, err, "connecting to etcd "+etcdEndpoint)
		require.ErrorIs(t, err, rpctypes.ErrAuthFailed)
		require.NotContains(t, err.Error(), "wrong-pw-d41d8cd9")
	})
	t.Run("a user without permission on the prefix makes Run fail", func(t *testing.T) {
		_, err := testRoot.UserAdd(ctx, "nobody", "nobody-pw-5e3f")
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = testRoot.UserDelete(context.Background(), "nobody") })
		t.Setenv("TANDEM_TEST_NOBODY", "nobody")
		t.Setenv("TANDEM_TEST_NOBODY_PASSWORD", "nobody-pw-5e3f")
		cfg := haConfig(t, time.Second)
		cfg.UsernameEnv, cfg.PasswordEnv = "TANDEM_TEST_NOBODY", "TANDEM_TEST_NOBODY_PASSWORD"
		e, err := NewElector(cfg, "a", log)
		require.NoError(t, err)
		defer e.Close()
		err = e.Run(ctx, func(context.Context, *Leadership) error {
			t.Error("a replica without permission was elected")
			return nil
		})
		require.ErrorIs(t, err, rpctypes.ErrPermissionDenied)
		require.NotContains(t, err.Error(), "nobody-pw-5e3f")
	})
	t.Run("the right credentials lead", func(t *testing.T) {
		cfg := haConfig(t, time.Second)
		e, err := NewElector(cfg, "a", log)
		require.NoError(t, err)
		defer e.Close()
		runCtx, cancel := context.WithCancel(ctx)
		var led bool
		require.NoError(t, e.Run(runCtx, func(ctx context.Context, l *Leadership) error {
			led = true
			cancel()
			return nil
		}))
		require.True(t, led)
	})
	require.NotContains(t, logs.String(), testPassword)
	require.NotContains(t, logs.String(), "wrong-pw-d41d8cd9")
	require.NotContains(t, logs.String(), "nobody-pw-5e3f")
	require.True(t, strings.Contains(logs.String(), "elected leader"), "the logs were captured")
}
