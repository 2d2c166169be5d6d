package reconcile

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Queue is a keyed work queue: adding a key that is already waiting is a
// no-op, a key is never handed to two workers at once, and a key added
// while it is being processed is processed again afterwards. Events carry
// identity only (a service name), never content: each pass re-reads
// everything, so reconciliation is level-triggered.
type Queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	ready      []string
	dirty      map[string]bool
	processing map[string]bool
	delayed    delayHeap
	timer      *time.Timer
	closed     bool
}

// NewQueue returns an empty queue.
func NewQueue() *Queue {
	q := &Queue{dirty: map[string]bool{}, processing: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add makes key ready now.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.closed || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if !q.processing[key] {
		q.ready = append(q.ready, key)
		q.cond.Signal()
	}
}

// AddAfter makes key ready after d (at once when d <= 0). An earlier
// pending time for the same key wins.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := time.Now().Add(d)
	for i, e := range q.delayed {
		if e.key == key {
			if at.Before(e.at) {
				q.delayed[i].at = at
				heap.Fix(&q.delayed, i)
				q.armLocked()
			}
			return
		}
	}
	heap.Push(&q.delayed, delayed{key: key, at: at})
	q.armLocked()
}

func (q *Queue) armLocked() {
	if len(q.delayed) == 0 {
		return
	}
	d := time.Until(q.delayed[0].at)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.promote)
		return
	}
	q.timer.Reset(d)
}

func (q *Queue) promote() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for len(q.delayed) > 0 && !q.delayed[0].at.After(now) {
		q.addLocked(heap.Pop(&q.delayed).(delayed).key)
	}
	q.armLocked()
}

// Get blocks until a key is ready or the queue is closed (ok false).
func (q *Queue) Get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key := q.ready[0]
	q.ready = q.ready[1:]
	delete(q.dirty, key)
	q.processing[key] = true
	return key, true
}

// Done marks key processed; if it was added meanwhile it becomes ready.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] {
		q.ready = append(q.ready, key)
		q.cond.Signal()
	}
}

// Close wakes every Get with ok false and drops pending work.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if q.timer != nil {
		q.timer.Stop()
	}
	q.cond.Broadcast()
}

type delayed struct {
	key string
	at  time.Time
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// waitFor is when a waiting pass asks to be looked at again (at once when
// it names no time).
func waitFor(err error) time.Duration {
	if we, ok := errorAs[*WaitingError](err); ok {
		return we.RequeueAfter
	}
	return 0
}

// Desired gives the current desired state of a service, pinned to the
// revision in force when asked. ok is false when the service left Git.
type Desired func(service string) (Target, bool)

// PassObserver is told about every finished pass (metrics).
type PassObserver func(service string, class Class, took time.Duration)

// Worker runs passes for the keys of a queue with a global concurrency
// limit; the queue guarantees one pass per service at a time.
type Worker struct {
	Queue       *Queue
	Reconciler  *Reconciler
	Desired     Desired
	Concurrency int
	Resync      time.Duration // every service is looked at this often when nothing else happens
	Backoff     Backoff
	// Grace is how long a pass in progress may continue after the worker's
	// context ends, so that a step is not cut in half by a shutdown.
	Grace time.Duration
	// Term, when set, is the term during which this worker may act (under
	// HA, the leadership). When it ends, passes in progress are cancelled
	// at once: the grace is for a shutdown of a worker that may still act,
	// never for one whose term is over.
	Term     context.Context
	Log      *slog.Logger
	OnPass   PassObserver
	failures sync.Map // service -> consecutive transient failures
}

// Run processes keys until ctx ends, then waits for passes in progress
// (each bounded by Grace) and returns.
func (w *Worker) Run(ctx context.Context) {
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, w.Queue.Close)
	defer stop()
	var wg sync.WaitGroup
	for range max(1, w.Concurrency) {
		wg.Go(func() {
			for {
				key, ok := w.Queue.Get()
				if !ok {
					return
				}
				w.process(ctx, log, key)
				w.Queue.Done(key)
			}
		})
	}
	wg.Wait()
}

func (w *Worker) process(ctx context.Context, log *slog.Logger, key string) {
	tgt, ok := w.Desired(key)
	if !ok {
		w.Reconciler.Forget(key)
		return
	}
	// The pass outlives ctx by at most Grace: a shutdown lets the current
	// step finish and be journaled instead of cutting it in half. It does
	// not outlive the term.
	passCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.Grace, func() { cancel(fmt.Errorf("shutdown grace of %s is over: %w", w.Grace, context.Canceled)) })
		context.AfterFunc(passCtx, func() { t.Stop() })
	})
	defer stopGrace()
	if w.Term != nil {
		stopTerm := context.AfterFunc(w.Term, func() {
			cancel(fmt.Errorf("the term to act ended (%v): %w", context.Cause(w.Term), context.Canceled))
		})
		defer stopTerm()
	}

	start := time.Now()
	res, err := w.Reconciler.Reconcile(passCtx, tgt)
	class := Classify(err)
	if w.OnPass != nil {
		w.OnPass(key, class, time.Since(start))
	}
	if ctx.Err() != nil {
		return
	}
	// Services that wait for this one (after:) look again now that its
	// status changed.
	for _, k := range w.Reconciler.takeWaiting(key) {
		w.Queue.Add(k)
	}
	switch class {
	case ClassNone:
		w.failures.Delete(key)
		if res.Requeue {
			w.Queue.Add(key)
		} else {
			w.Queue.AddAfter(key, w.Resync)
		}
	case ClassWaiting:
		// Exactly when the wait's time is up; evidence that is pushed (the
		// registry) adds the key earlier, and the earlier time wins.
		w.failures.Delete(key)
		w.Queue.AddAfter(key, waitFor(err))
	case ClassStalled:
		w.failures.Delete(key)
		log.Error("reconcile stalled", "target", key, "reason", Reason(err), "error", err)
		w.Queue.AddAfter(key, w.Resync) // live state is still watched for drift
	default:
		n, _ := w.failures.LoadOrStore(key, 0)
		attempt := n.(int) + 1
		w.failures.Store(key, attempt)
		d := w.Backoff.Delay(attempt)
		log.Warn("reconcile failed, retrying", "target", key, "attempt", attempt, "retry_in", d, "error", err)
		w.Queue.AddAfter(key, d)
	}
}
