package scalebench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/all"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// observePlan is the daemon's pass without its bookkeeping: for every
// service, with concurrency workers, load the journal, decide what to read
// (reconcile.NeedsFor), observe with the production providers and plan
// (reconcile.Compute). Status, metrics and events are left out. It fails
// when a service cannot be observed or is not in sync.
type observePlan struct {
	ps          *providers.Set
	set         *spec.Set
	store       reconcile.Store
	concurrency int
}

// newObservePlan builds the production providers of cfg, the desired
// state of repoDir and a journal in journalDir; close releases the
// providers.
func newObservePlan(cfg *spec.Config, repoDir, journalDir string, concurrency int) (op *observePlan, close func() error, err error) {
	set, err := loadDesired(repoDir, cfg)
	if err != nil {
		return nil, nil, err
	}
	ps, closeProviders, err := all.New(cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	store, err := reconcile.NewFileStore(journalDir)
	if err != nil {
		closeProviders()
		return nil, nil, err
	}
	return &observePlan{ps: ps, set: set, store: store, concurrency: concurrency}, closeProviders, nil
}

// pass runs once over every service and returns the mean time per service.
func (o *observePlan) pass(ctx context.Context) (mean time.Duration, err error) {
	var (
		mu    sync.Mutex
		total time.Duration
	)
	err = parallel(o.set.Services, o.concurrency, func(svc *spec.Service) error {
		start := time.Now()
		err := o.one(ctx, svc)
		mu.Lock()
		total += time.Since(start)
		mu.Unlock()
		return err
	})
	if err != nil {
		return 0, err
	}
	return total / time.Duration(len(o.set.Services)), nil
}

func (o *observePlan) one(ctx context.Context, svc *spec.Service) error {
	st, err := o.store.Load(ctx, svc.Name)
	if err != nil {
		return err
	}
	live, err := reconcile.Observe(ctx, o.ps, svc, reconcile.NeedsFor(svc, st))
	if err != nil {
		return err
	}
	plan := reconcile.Compute(reconcile.Input{Service: svc, Live: live, State: st, Now: time.Now()})
	if !plan.InSync || plan.Step != nil {
		return fmt.Errorf("%s is not in sync: %s", svc.Name, plan.Summary)
	}
	return nil
}

// loadDesired reads the desired state from the repository's work tree.
func loadDesired(repoDir string, cfg *spec.Config) (*spec.Set, error) {
	set, err := spec.Load(os.DirFS(repoDir), servicesDir, cfg)
	if err != nil {
		return nil, fmt.Errorf("loading the desired state: %w", err)
	}
	return set, nil
}
