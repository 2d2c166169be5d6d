package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// actingChecker records, in this process, when each replica acts: from
// just before a fenced write to just after it. Two replicas must never be
// inside at once.
type actingChecker struct {
	mu       sync.Mutex
	acting   map[string]bool
	overlaps []string
	commits  map[string]int // by election key
}

func (c *actingChecker) begin(who string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for other := range c.acting {
		c.overlaps = append(c.overlaps, fmt.Sprintf("%s began to act while %s acted", who, other))
	}
	c.acting[who] = true
}

func (c *actingChecker) end(who, key string, committed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.acting, who)
	if committed {
		c.commits[key]++
	}
}

func (c *actingChecker) committed(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commits[key]
}

// actor leads by writing the journal through the fenced store, again and
// again, as a reconciler does before every side effect. Each write names
// the term that made it.
func actor(who string, chk *actingChecker, terms chan<- term) func(context.Context, *Leadership) error {
	return func(ctx context.Context, l *Leadership) error {
		tm, ok := announce(ctx, terms, who, l)
		if !ok {
			return nil
		}
		store := l.Store()
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return nil
			case <-tm.resign:
				return nil
			case <-pace.C:
			}
			if l.Check(ctx) != nil {
				return nil
			}
			chk.begin(who)
			err := store.Save(ctx, reconcile.State{Service: "svc", Applied: &reconcile.Applied{Version: fmt.Sprintf("%s %d", l.key, n)}})
			chk.end(who, l.key, err == nil)
		}
	}
}

// handover is how a leader gives way in handoverRounds.
type handover int

const (
	resign handover = iota // lead returns
	crash                  // the process dies; it is restarted
	depose                 // its lease is revoked while it keeps running and writing, as after a long pause
)

// handoverRounds runs two replicas that act while they lead, hands
// leadership over as plan says, each time after the leader has acted a
// few times, and returns the checker and etcd's history of the prefix.
func handoverRounds(t *testing.T, cfg spec.HAConfig, plan []handover) (*actingChecker, []*clientv3.Event) {
	ctx := t.Context()

	// Everything etcd commits under the prefix, in commit order.
	from, err := testRoot.Get(ctx, cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	wctx, stopWatch := context.WithCancel(ctx)
	watch := testRoot.Watch(wctx, cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(from.Header.Revision+1))
	var history []*clientv3.Event
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for resp := range watch {
			history = append(history, resp.Events...)
		}
	}()

	chk := &actingChecker{acting: map[string]bool{}, commits: map[string]int{}}
	terms := make(chan term)
	replicas := map[string]*replica{}
	for _, name := range []string{"a", "b"} {
		replicas[name] = startReplica(t, cfg, name, actor(name, chk, terms))
	}
	var keys []string
	for round := range len(plan) + 1 {
		tm := receive(t, terms)
		require.NotContains(t, keys, tm.l.key, "each term has its own election key")
		keys = append(keys, tm.l.key)
		eventually(t, func() bool { return chk.committed(tm.l.key) >= 3 }, "the leader acts")
		if round == len(plan) {
			break
		}
		switch plan[round] {
		case resign:
			close(tm.resign)
		case crash:
			replicas[tm.who].crash()
			replicas[tm.who] = startReplica(t, cfg, tm.who, actor(tm.who, chk, terms))
		case depose:
			resp, err := testRoot.Get(ctx, tm.l.key)
			require.NoError(t, err)
			require.Len(t, resp.Kvs, 1)
			_, err = testRoot.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
			require.NoError(t, err)
		}
	}
	for _, r := range replicas {
		r.stop()
	}
	stopWatch()
	<-watched
	return chk, history
}

func TestNoTwoReplicasEverAct(t *testing.T) {
	var plan []handover
	for range 4 {
		plan = append(plan, resign, resign, crash)
	}
	cfg := haConfig(t, time.Second)
	chk, history := handoverRounds(t, cfg, plan)
	require.Empty(t, chk.overlaps)
	require.Empty(t, fencingViolations(t, cfg.Prefix, history))
}

// A deposed leader keeps writing until it notices; the fence refuses every
// write after its successor was elected. (Acting is not checked in process
// time here: a paused leader believes it acts; that is what fencing is for.)
func TestDeposedLeadersNeverCommitAfterTheyLostTheirKey(t *testing.T) {
	cfg := haConfig(t, time.Second)
	chk, history := handoverRounds(t, cfg, []handover{depose, depose, depose, depose, depose, depose})
	require.Empty(t, fencingViolations(t, cfg.Prefix, history))
	require.Len(t, chk.commits, 7, "every term acted")
}

// fencingViolations replays etcd's history of the election and the journal:
// at the revision of every journal write, the term that made it must have
// been the leader, i.e. its election key existed and was the oldest one. It
// returns the first few violations.
func fencingViolations(t *testing.T, prefix string, history []*clientv3.Event) []string {
	live := map[string]int64{} // election key -> create revision
	writes := 0
	var violations []string
	for _, ev := range history {
		key := string(ev.Kv.Key)
		switch {
		case strings.HasPrefix(key, prefix+"/leader/") && ev.Type == mvccpb.DELETE:
			delete(live, key)
		case strings.HasPrefix(key, prefix+"/leader/") && ev.IsCreate():
			live[key] = ev.Kv.CreateRevision
		case strings.HasPrefix(key, prefix+"/journal/"):
			var st reconcile.State
			require.NoError(t, json.Unmarshal(ev.Kv.Value, &st))
			writer := strings.Fields(st.Applied.Version)[0]
			leader := ""
			for k, rev := range live {
				if leader == "" || rev < live[leader] {
					leader = k
				}
			}
			if writer != leader && len(violations) < 5 {
				violations = append(violations, fmt.Sprintf("revision %d: %s wrote while %q led", ev.Kv.ModRevision, writer, leader))
			}
			writes++
		}
	}
	require.Positive(t, writes, "the history holds the journal writes")
	return violations
}
