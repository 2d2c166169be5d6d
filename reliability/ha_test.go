package reliability_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

const (
	haPrefix   = "/tandem/ha"
	haPassword = "ha-etcd-pw"
)

// TestHALeaderKilledOrStoppedMidTransitionTheOtherReplicaFinishes runs two
// `tandem run` replicas with ha on an embedded etcd, under traffic through
// the load balancer and a Nacos consumer. The leader is SIGKILLed in the
// drain phase of a release: the other replica takes over after the lease
// TTL and finishes the release from the journal in etcd. The killed one
// comes back as a follower; the new leader is then stopped with SIGTERM in
// the shift of the revert, and the first one finishes that. Throughout: the
// monitor sees no invariant broken, no group is deployed twice, users
// notice nothing, a follower says who leads, and the replicas' acting
// intervals (from "elected leader" to "stepping down" in their logs, or to
// the kill) never overlap.
func TestHALeaderKilledOrStoppedMidTransitionTheOtherReplicaFinishes(t *testing.T) {
	t.Setenv("T_HA_ETCD_USER", etcdUser)
	t.Setenv("T_HA_ETCD_PASSWORD", haPassword)
	endpoint := startEtcd(t, etcdUser, haPassword, "/tandem/")
	e := newEnv(t, envOptions{services: []stage.Service{{Name: "web", LB: spec.KindALB, Nacos: true}}, timing: faultTiming,
		warmUp: 200 * time.Millisecond, config: func(_ *stage.Stage, cfg *spec.Config) {
			cfg.HA = &spec.HAConfig{Etcd: []string{endpoint}, Prefix: haPrefix, LeaseTTL: spec.Duration(2 * time.Second),
				UsernameEnv: "T_HA_ETCD_USER", PasswordEnv: "T_HA_ETCD_PASSWORD"}
		}})
	// The second replica: the same configuration, its own state directory
	// (Git cache, events) and API port.
	dir2 := t.TempDir()
	cfg2 := *e.daemon.cfg
	cfg2.StateDir = filepath.Join(dir2, "state")
	replicas := []*daemon{e.daemon, newDaemon(t, dir2, &cfg2)}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Username: etcdUser, Password: haPassword, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { etcd.Close() })

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for _, r := range replicas {
		r.start()
	}
	first := awaitLeader(ctx, t, replicas...)
	second := replicas[1-slices.Index(replicas, first)]
	requireFollowerNamesTheLeader(t, second)
	e.daemon = first
	e.requireInSyncAtHead(ctx, "web")
	viaLB := e.startTraffic(e.stage.URL("web"), 100, 10)
	viaNacos := e.startTraffic(e.stage.ConsumerURL("web"), 30, 3)
	var kills []acting // when a replica was killed: its acting ended then at the latest

	// The release; the leader dies in the drain.
	rev, err := e.commit(ctx, "web", "1.1.0")
	require.NoError(t, err)
	awaitJournalPhase(ctx, t, etcd, "web", reconcile.PhaseDrain)
	first.kill()
	kills = append(kills, acting{replica: first, to: time.Now()})
	e.daemon = awaitLeader(ctx, t, second)
	st := e.requireOutcome(ctx, "web", rev, succeeded)
	e.requireLiveIs("web", spec.GroupB, "1.1.0")
	require.NotEmpty(t, find(eventsOf(t, second), reconcile.ReasonTransitionSucceeded, ""), "the new leader finished the release")
	t.Logf("release finished by the second replica: %s", st.Summary)

	// The killed replica comes back, as a follower.
	first.start()
	requireFollowerNamesTheLeader(t, first)

	// The revert; the leader is stopped in the shift and hands over.
	rev, err = e.commit(ctx, "web", "")
	require.NoError(t, err)
	awaitJournalPhase(ctx, t, etcd, "web", reconcile.PhaseShift, reconcile.PhaseDisable)
	second.stop()
	e.daemon = awaitLeader(ctx, t, first)
	e.requireOutcome(ctx, "web", rev, succeeded)
	e.requireLiveIs("web", spec.GroupA, "1.0.0")

	e.mon.requireNoViolation()
	require.Empty(t, e.deploy.repeated(), "no group was deployed twice")
	require.Equal(t, 1, e.deploy.count("web", spec.GroupB, "1.1.0"), "one deploy for the release; the revert deploys nothing")
	r := viaLB.Stop()
	t.Logf("through the load balancer: %s", r)
	requireUnnoticed(t, "load balancer", r)
	r = viaNacos.Stop()
	t.Logf("through the nacos consumer: %s", r)
	requireUnnoticed(t, "nacos consumer", r)
	first.stop()

	var terms []acting
	for _, rep := range replicas {
		terms = append(terms, actingIntervals(t, rep, kills)...)
	}
	require.GreaterOrEqual(t, len(terms), 3, "three terms: first, second, first again: %v", terms)
	slices.SortFunc(terms, func(a, b acting) int { return a.from.Compare(b.from) })
	for i := 1; i < len(terms); i++ {
		require.True(t, terms[i-1].to.Before(terms[i].from), "two replicas acted at once: %v and %v", terms[i-1], terms[i])
	}
	t.Logf("acting terms: %v", terms)
}

// acting is one term of a replica: from its "elected leader" log line to
// its "stepping down"/"leadership lost" line, or to when it was killed.
type acting struct {
	replica  *daemon
	from, to time.Time
}

func (a acting) String() string {
	return fmt.Sprintf("%s %s..%s", a.replica.cfg.Listen, a.from.Format("15:04:05.000"), a.to.Format("15:04:05.000"))
}

// actingIntervals reads a replica's terms from its JSON log; a term its
// log does not end ends at the replica's kill.
func actingIntervals(t *testing.T, d *daemon, kills []acting) []acting {
	t.Helper()
	f, err := os.Open(d.logPath)
	require.NoError(t, err)
	defer f.Close()
	var out []acting
	var open *acting
	closeAt := func(at time.Time) {
		if open != nil {
			open.to = at
			out = append(out, *open)
			open = nil
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "=== run ") {
			// A new process: a term the last one left open ended with its kill.
			for _, k := range kills {
				if k.replica == d && open != nil && k.to.After(open.from) {
					closeAt(k.to)
				}
			}
			require.Nil(t, open, "%s: a term without an end or a kill", d.cfg.Listen)
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch {
		case rec.Msg == "elected leader":
			require.Nil(t, open, "%s: elected twice without stepping down", d.cfg.Listen)
			open = &acting{replica: d, from: rec.Time}
		case strings.HasPrefix(rec.Msg, "stepping down"), rec.Msg == "leadership lost":
			closeAt(rec.Time)
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, open, "%s: a term with no end in the log (it stopped acting without saying so)", d.cfg.Listen)
	return out
}

// awaitLeader polls the replicas' /readyz (bounded) until one of them is
// ready, which under ha means it leads and has a desired state, and
// returns it.
func awaitLeader(ctx context.Context, t *testing.T, candidates ...*daemon) *daemon {
	t.Helper()
	var leader *daemon
	err := poll(ctx, 10*time.Millisecond, func() bool {
		for _, d := range candidates {
			if code, _, err := d.get("/readyz"); err == nil && code == http.StatusOK {
				leader = d
				return true
			}
		}
		return false
	})
	require.NoError(t, err, "no replica became the leader")
	return leader
}

// requireFollowerNamesTheLeader checks what a follower's API says: not
// ready, naming the replica that leads, and no services (not an empty
// fleet).
func requireFollowerNamesTheLeader(t *testing.T, d *daemon) {
	t.Helper()
	code, body, err := d.get("/readyz")
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	require.Contains(t, string(body), "leads; ask it")
	code, body, err = d.get("/api/v1/services")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	var l server.ServiceList
	require.NoError(t, json.Unmarshal(body, &l))
	require.Empty(t, l.Services)
	require.Contains(t, l.NotReady, "this replica is not acting")
	require.Contains(t, l.NotReady, "leads; ask it")
}

// awaitJournalPhase polls the journal in etcd (bounded) until the
// service's transition is in one of the phases.
func awaitJournalPhase(ctx context.Context, t *testing.T, etcd *clientv3.Client, service string, phases ...reconcile.Phase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last reconcile.Phase
	err := poll(ctx, 2*time.Millisecond, func() bool {
		resp, err := etcd.Get(ctx, haPrefix+"/journal/"+service)
		if err != nil || len(resp.Kvs) == 0 {
			return false
		}
		var st reconcile.State
		if json.Unmarshal(resp.Kvs[0].Value, &st) != nil || st.Transition == nil {
			return false
		}
		last = st.Transition.Phase
		return slices.Contains(phases, last)
	})
	require.NoError(t, err, "the journal of %s in etcd never showed phase %v (last %q)", service, phases, last)
}

// eventsOf reads the events a replica recorded in its state directory.
func eventsOf(t *testing.T, d *daemon) []reconcile.Event { t.Helper(); return d.eventsFile() }
