// Package gitsource keeps Tandem's desired state in step with a Git branch.
//
// A Source fetches one branch into a cache repository under the state dir
// (which survives restarts), on start, on a jittered poll, on Trigger (the
// webhook) and, for a local repository, as soon as its refs change
// (fsnotify). Every new head is judged as a whole: it is in force only when
// its signature passes the configured policy and spec.Load accepts the
// whole tree at that commit. Otherwise the last good revision stays in
// force and the rejection is reported. A new head must also descend from
// the revision in force (see ReasonNonFastForward) unless
// git.allowNonFastForward says otherwise.
//
// Release and Rollback are the library side of `tandem release` and
// `tandem rollback`: they edit a working tree with go-git and commit.
package gitsource

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tandemhq/tandem/spec"
)

// Revision is one commit of the desired-state branch.
type Revision struct {
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Email   string    `json:"email"`
	Subject string    `json:"subject"`
	When    time.Time `json:"when"`             // author time
	Signer  string    `json:"signer,omitempty"` // the trusted key, when signatures are verified
	// Set is the whole desired state at this commit; nil when rejected.
	Set *spec.Set `json:"-"`
}

// Reasons a head is not in force, in the style of status conditions.
const (
	ReasonInvalid   = "InvalidSpec"        // the tree does not load: spec.Problems, file:line: field: message
	ReasonSignature = "UntrustedSignature" // *SignatureError
	// ReasonNonFastForward: the head does not descend from the revision in
	// force (a reset and force push), and git.allowNonFastForward is off. A
	// signed old commit pushed again would otherwise roll the desired state
	// back past changes that were meant to stay; revert instead.
	ReasonNonFastForward = "NonFastForward"
)

// Rejection says why the fetched head is not in force.
type Rejection struct {
	Reason string // ReasonInvalid, ReasonSignature or ReasonNonFastForward
	// Err is the whole story: spec.Problems (see spec.AsProblems) for an
	// invalid tree, *SignatureError for a signature, a plain error naming
	// both commits for a non-fast-forward head.
	Err error
}

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// Status is what the source knows. Revisions are immutable and shared.
type Status struct {
	Good     *Revision  // the last good revision, in force; nil before the first
	Head     *Revision  // the newest fetched head; the same pointer as Good when it is in force
	Rejected *Rejection // why Head is not in force; nil when Head is Good
	FetchErr error      // the last fetch failure; nil once a fetch succeeds
	Failures int        // consecutive failed fetches; the retry delay doubles with each
	// LastFetch is when the last fetch attempt ended, NextFetch when the next
	// one is due (poll or retry; Trigger and fsnotify start one sooner).
	LastFetch time.Time
	NextFetch time.Time
}

// Tuning. The poll interval comes from the config; these are fixed.
const (
	jitterFraction = 0.1             // polls and retries land within ±10% of their delay
	retryBase      = time.Second     // first retry after a failed fetch
	retryCap       = 5 * time.Minute // retries never wait longer (nor longer than the interval, if it is longer)
	fetchTimeout   = 5 * time.Minute // one fetch, including a first clone
	refsDebounce   = 20 * time.Millisecond
	remoteName     = "origin"
	goodRefPrefix  = "refs/tandem/good/" // + branch: the last good commit, so it survives restarts
)

// Source follows one branch of one repository. Create it with New, call Run
// once; every other method is safe for concurrent use.
type Source struct {
	cfg     spec.GitConfig
	full    *spec.Config
	log     *slog.Logger
	remote  *remote
	verify  *verifier // nil: signatures are not checked
	webhook spec.Secret
	repo    *git.Repository
	cache   string

	interval            time.Duration
	retryBase, retryMax time.Duration
	debounce            time.Duration

	trigger chan struct{}

	mu     sync.Mutex
	status Status
	subs   []chan struct{}
}

// New prepares a source: it resolves the credentials from the environment,
// loads the trusted keys, and opens the cache repository
// <stateDir>/git/<hash of the URL> (creating it on first use). The last good
// revision recorded in the cache is in force again at once, before any
// fetch, so a restart while the remote is down keeps the desired state.
//
// cfg must be defaulted and validated (spec.ParseConfig does both); full,
// when not nil, lets spec.Load check the provider names the services use.
func New(cfg spec.GitConfig, full *spec.Config, stateDir string, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Branch == "" || cfg.Interval.D() <= 0 {
		return nil, errors.New("git config is not defaulted: branch and interval are required")
	}
	cfg.MaxFetchBytes = cmp.Or(cfg.MaxFetchBytes, defaultMaxFetchBytes)
	r, err := resolveRemote(cfg.URL, cfg.Auth)
	if err != nil {
		return nil, err
	}
	v, err := newVerifier(cfg.Verify)
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:       cfg,
		full:      full,
		log:       log.With("provider", "git"),
		remote:    r,
		verify:    v,
		interval:  cfg.Interval.D(),
		retryBase: retryBase,
		retryMax:  max(retryCap, cfg.Interval.D()),
		debounce:  refsDebounce,
		trigger:   make(chan struct{}, 1),
	}
	if cfg.Webhook != nil {
		if s.webhook, err = spec.SecretFromEnv("git.webhook.secretEnv", cfg.Webhook.SecretEnv); err != nil {
			return nil, err
		}
	}
	if r.plaintext {
		s.log.Warn("git credentials are sent over plain http; use https")
	}
	sum := sha256.Sum256([]byte(cfg.URL))
	s.cache = filepath.Join(stateDir, "git", hex.EncodeToString(sum[:8]))
	if err := repairCache(s.cache, s.log); err != nil {
		return nil, err
	}
	if s.repo, err = openCache(s.cache, cfg.URL, cfg.MaxFetchBytes); err != nil {
		return nil, err
	}
	if err := s.restore(); err != nil {
		return nil, err
	}
	return s, nil
}

// defaultMaxFetchBytes applies when the config was not defaulted by spec.
const defaultMaxFetchBytes = 64 << 20

// openCache opens the bare cache repository, or creates it, with fetches
// limited to maxFetch bytes.
func openCache(dir, url string, maxFetch int64) (*git.Repository, error) {
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err = os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating git cache: %w", err)
		}
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("opening git cache %s (remove it to start afresh): %w", dir, err)
	}
	if _, err := repo.Remote(remoteName); errors.Is(err, git.ErrRemoteNotFound) {
		_, err = repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{url}})
		if err != nil {
			return nil, fmt.Errorf("configuring git cache %s: %w", dir, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("opening git cache %s (remove it to start afresh): %w", dir, err)
	}
	if repo, err = withFetchLimit(repo, maxFetch); err != nil {
		return nil, fmt.Errorf("opening git cache %s: %w", dir, err)
	}
	return repo, nil
}

func (s *Source) trackingRef() plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, s.cfg.Branch)
}

func (s *Source) goodRef() plumbing.ReferenceName {
	return plumbing.ReferenceName(goodRefPrefix + s.cfg.Branch)
}

// restore judges what the cache holds from before a restart: the last good
// commit, then the last fetched head when it differs. A ref the cache
// cannot serve (its objects went with a pack repairCache removed) is
// dropped: the next fetch brings the head back.
func (s *Source) restore() error {
	for _, name := range []plumbing.ReferenceName{s.goodRef(), s.trackingRef()} {
		ref, err := s.repo.Reference(name, true)
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			continue
		}
		if err == nil {
			err = s.consider(ref.Hash())
		}
		if err != nil {
			s.log.Warn("git cache: dropped a ref it cannot serve; the next fetch brings the head back", "ref", name, "error", err)
			if err := s.repo.Storer.RemoveReference(name); err != nil {
				return fmt.Errorf("repairing git cache %s: %w", s.cache, err)
			}
		}
	}
	return nil
}

// Run fetches at once, then polls every interval (±10%) until ctx ends.
// While fetches fail it retries after 1s, doubling up to 5 minutes (or the
// interval, if longer); the last good revision stays in force meanwhile.
// For a local repository, changes of its refs start a fetch at once. Run
// returns nil when ctx ends.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.remote.local != "" {
		if err := s.watchRefs(ctx, &wg); err != nil {
			s.log.Warn("git refs are not watched; changes are seen on the next poll", "error", err)
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.trigger:
		}
		delay := s.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(delay)
	}
}

// Trigger asks for a fetch now. It never blocks; triggers that arrive
// while one is pending are merged into it.
func (s *Source) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Subscribe returns a channel that receives a value whenever the status
// changes (a new good revision, a new head or rejection, a fetch failure
// or recovery). Notifications carry no content and coalesce: read
// Current() after each. The channel is never closed.
func (s *Source) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	return ch
}

// Current returns a snapshot of the status.
func (s *Source) Current() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// pass fetches once and judges a new head. It returns the delay until the
// next scheduled fetch.
func (s *Source) pass(ctx context.Context) time.Duration {
	err := s.fetch(ctx)
	if err == nil {
		now, delay := time.Now(), jitter(s.interval)
		s.update(func(st *Status) {
			st.FetchErr, st.Failures = nil, 0
			st.LastFetch, st.NextFetch = now, now.Add(delay)
		})
		var ref *plumbing.Reference
		if ref, err = s.repo.Reference(s.trackingRef(), true); err == nil {
			err = s.consider(ref.Hash())
		}
		if err == nil {
			return delay
		}
	}
	if ctx.Err() != nil {
		return 0 // shutting down: an interrupted fetch is not news
	}
	now := time.Now()
	failures := s.Current().Failures + 1 // only Run's goroutine changes it
	delay := jitter(min(s.retryBase<<min(failures-1, 30), s.retryMax))
	s.log.Warn("git fetch failed; the last good revision stays in force", "error", err, "retry_in", delay)
	s.update(func(st *Status) {
		st.FetchErr, st.Failures = err, failures
		st.LastFetch, st.NextFetch = now, now.Add(delay)
	})
	return delay
}

func (s *Source) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	rem, err := s.repo.Remote(remoteName)
	if err != nil {
		return fmt.Errorf("reading git cache %s: %w", s.cache, err)
	}
	refSpec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", s.cfg.Branch, s.trackingRef()))
	limit, _ := s.repo.Storer.(*limitedStorage)
	if limit != nil {
		limit.begin(cancel)
	}
	err = rem.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{refSpec},
		Auth:     s.remote.auth,
		Tags:     git.NoTags,
		Force:    true,
	})
	if limit != nil && limit.end() {
		if rmErr := removeTempPacks(s.cache); rmErr != nil {
			s.log.Warn("git cache: could not remove the pack of a refused fetch", "error", rmErr)
		}
		return fmt.Errorf("fetching branch %s from %s: the pack passed %d bytes (git.maxFetchBytes); nothing was kept: %w",
			s.cfg.Branch, redactText(s.cfg.URL), s.cfg.MaxFetchBytes, errFetchTooLarge)
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return redactErr(fmt.Errorf("fetching branch %s from %s: %w", s.cfg.Branch, s.cfg.URL, err), s.remote.secrets...)
	}
	return nil
}

// consider judges the commit h unless it is already the head, and records
// the result. Only storage failures are returned: a bad commit is a
// rejection, not an error.
func (s *Source) consider(h plumbing.Hash) error {
	if head := s.Current().Head; head != nil && head.Hash == h.String() {
		return nil
	}
	rev, rej, err := s.evaluate(h)
	if err != nil {
		return err
	}
	if rej != nil {
		s.log.Error("git revision rejected; the last good revision stays in force",
			"revision", rev.Hash, "reason", rej.Reason, "error", rej.Err)
		s.update(func(st *Status) { st.Head, st.Rejected = rev, rej })
		return nil
	}
	if err := s.repo.Storer.SetReference(plumbing.NewHashReference(s.goodRef(), h)); err != nil {
		return fmt.Errorf("recording good revision %s in git cache %s: %w", h, s.cache, err)
	}
	s.log.Info("git revision in force", "revision", rev.Hash, "author", rev.Author, "subject", rev.Subject)
	s.update(func(st *Status) { st.Good, st.Head, st.Rejected = rev, rev, nil })
	return nil
}

// evaluate reads commit h and decides whether it may be applied: its
// signature must pass the policy and the whole tree must load.
func (s *Source) evaluate(h plumbing.Hash) (*Revision, *Rejection, error) {
	c, err := s.repo.CommitObject(h)
	if err != nil {
		return nil, nil, fmt.Errorf("reading commit %s: %w", h, err)
	}
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	rev := &Revision{
		Hash:    h.String(),
		Author:  c.Author.Name,
		Email:   c.Author.Email,
		Subject: subject,
		When:    c.Author.When,
	}
	if s.verify != nil {
		signer, err := s.verify.check(c)
		var se *SignatureError
		if errors.As(err, &se) {
			return rev, &Rejection{Reason: ReasonSignature, Err: err}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		rev.Signer = signer
	}
	if rej, err := s.descends(c); rej != nil || err != nil {
		return rev, rej, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, nil, fmt.Errorf("reading tree of commit %s: %w", h, err)
	}
	set, err := spec.Load(treeFS{root: tree}, s.cfg.Path, s.full)
	if err != nil {
		return rev, &Rejection{Reason: ReasonInvalid, Err: err}, nil
	}
	rev.Set = set
	return rev, nil, nil
}

// descends refuses commit c when it does not descend from the revision in
// force, unless git.allowNonFastForward allows it.
func (s *Source) descends(c *object.Commit) (*Rejection, error) {
	good := s.Current().Good
	if good == nil || s.cfg.AllowNonFastForward || good.Hash == c.Hash.String() {
		return nil, nil
	}
	g, err := s.repo.CommitObject(plumbing.NewHash(good.Hash))
	if err != nil {
		return nil, fmt.Errorf("reading commit %s, the revision in force: %w", good.Hash, err)
	}
	ok, err := g.IsAncestor(c)
	if err != nil {
		return nil, fmt.Errorf("checking that commit %s descends from %s: %w", c.Hash, good.Hash, err)
	}
	if ok {
		return nil, nil
	}
	return &Rejection{Reason: ReasonNonFastForward, Err: fmt.Errorf(
		"commit %s does not descend from %s, the revision in force: a reset and force push is refused, since it could bring back an older desired state (even a signed one); "+
			"to go back, commit the change on top (git revert, tandem rollback), or set git.allowNonFastForward: true in the daemon config",
		shortHash(c.Hash.String()), shortHash(good.Hash))}, nil
}

// update changes the status and notifies subscribers when anything but the
// fetch times changed.
func (s *Source) update(change func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := digest(s.status)
	change(&s.status)
	if digest(s.status) == before {
		return
	}
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func digest(st Status) string {
	hash := func(r *Revision) string {
		if r == nil {
			return ""
		}
		return r.Hash
	}
	text := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	var rej error
	if st.Rejected != nil {
		rej = st.Rejected
	}
	return fmt.Sprintf("%s|%s|%s|%s|%d", hash(st.Good), hash(st.Head), text(rej), text(st.FetchErr), st.Failures)
}

// jitter spreads d over ±10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*jitterFraction*float64(d))
}
