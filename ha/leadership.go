package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandemhq/tandem/reconcile"
)

// ErrNotLeader is wrapped by every error that refuses to act because this
// replica does not lead (any more). reconcile classifies it as transient:
// nothing was done, nobody has to act, and the pass is retried by whichever
// replica leads next, from the journal.
var ErrNotLeader = errors.New("this replica is not the leader")

// Why a leadership ends.
var (
	errLeaseLost   = errors.New("etcd lease lost")
	errDeposed     = errors.New("the election key is gone: another replica may lead")
	errSteppedDown = errors.New("stepped down")
)

// Leadership is one term of this replica as the leader. It is the Fence and
// the Store of the reconciler that acts during the term.
//
// Check is local and costs nothing: it fails once the term has ended (the
// lease was lost, a fenced write was refused, or lead returned). A
// shutdown does not end the term by itself: the lease is kept alive while
// lead finishes, so that a step within the shutdown grace is still fenced
// and journaled by this leader. Check alone is not enough: the etcd client
// notices an expired lease only after the TTL has passed on its own clock,
// up to a second late. The fence that holds is the store: every Save is a
// transaction that commits only while this term's election key exists with
// its creation revision, and the reconciler journals right before every
// side effect and checks the fence right before every provider write. What
// remains is the time a provider call takes; give the daemon Context as
// its term, and the call's context is cancelled the moment the term ends.
type Leadership struct {
	ctx     context.Context
	end     context.CancelCauseFunc
	client  *clientv3.Client
	key     string // the election key
	rev     int64  // its creation revision: the fencing token
	journal string // key prefix of the journal
}

var _ reconcile.Fence = (*Leadership)(nil)

// Check returns an error wrapping ErrNotLeader once the term has ended.
func (l *Leadership) Check(context.Context) error {
	if l.ctx.Err() != nil {
		return fmt.Errorf("leadership %s ended (%v): %w", l.key, context.Cause(l.ctx), ErrNotLeader)
	}
	return nil
}

// Context ends with the term, with the reason as its cause; a shutdown
// that only asks lead to return does not end it. It is the daemon's
// Options.Term.
func (l *Leadership) Context() context.Context { return l.ctx }

// Store returns the journal in etcd, one key per service under
// <prefix>/journal/, with writes fenced by this term.
func (l *Leadership) Store() reconcile.Store { return journal{l} }

type journal struct{ l *Leadership }

var _ reconcile.Store = journal{}

// serviceRE is reconcile.FileStore's rule for journal names: a service
// name is one key segment.
var serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func (j journal) key(service string) (string, error) {
	if !serviceRE.MatchString(service) {
		return "", fmt.Errorf("journal: invalid service name %q", service)
	}
	return j.l.journal + service, nil
}

// Load reads the journal (a linearizable read: it sees every write a
// previous leader committed), or an empty state for a new service.
func (j journal) Load(ctx context.Context, service string) (reconcile.State, error) {
	key, err := j.key(service)
	if err != nil {
		return reconcile.State{}, err
	}
	resp, err := j.l.client.Get(ctx, key)
	if err != nil {
		return reconcile.State{}, fmt.Errorf("reading journal of %s from etcd: %w", service, err)
	}
	if len(resp.Kvs) == 0 {
		return reconcile.State{Service: service}, nil
	}
	var st reconcile.State
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return reconcile.State{}, reconcile.Stalled("CorruptJournal",
			"journal %s in etcd is not valid JSON (%v); inspect it, then fix or delete the key", key, err)
	}
	if st.Service != service {
		return reconcile.State{}, reconcile.Stalled("CorruptJournal",
			"journal %s in etcd holds the state of service %q; inspect it, then fix or delete the key", key, st.Service)
	}
	return st, nil
}

// Save writes the state in one transaction that commits only while this
// term's election key exists with its creation revision. When it does not,
// the term ends and the error wraps ErrNotLeader.
func (j journal) Save(ctx context.Context, st reconcile.State) error {
	key, err := j.key(st.Service)
	if err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding journal of %s: %w", st.Service, err)
	}
	l := j.l
	resp, err := l.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return fmt.Errorf("writing journal of %s to etcd: %w", st.Service, err)
	}
	if !resp.Succeeded {
		l.end(errDeposed)
		return fmt.Errorf("writing journal of %s: refused, leadership %s is gone: %w", st.Service, l.key, ErrNotLeader)
	}
	return nil
}
