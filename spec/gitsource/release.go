package gitsource

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/merkletrie"

	"github.com/tandemhq/tandem/spec"
)

// ReleaseTrailer marks a release commit; Rollback looks for it. Its value
// is "<service> <from-version>-><to-version>".
const ReleaseTrailer = "Tandem-Release"

// RepoOptions say where Release and Rollback commit.
type RepoOptions struct {
	RepoDir string // a working tree of the desired-state repository (default "."); its checked-out branch gets the commit
	Dir     string // the directory of service files, relative to the repository root (git.path; default "services")
	// Config, when not nil, lets validation check the provider names the
	// services use, as the daemon does.
	Config *spec.Config
	Author *object.Signature // nil: user.name and user.email from the git config
	Push   bool              // push the branch to origin after committing
	// Auth are the credentials for Push, read from the environment as the
	// daemon reads them. The zero value uses go-git's defaults: anonymous
	// http(s), and for ssh the agent with ~/.ssh/known_hosts.
	Auth spec.GitAuth
	// SignKey, when not nil, signs the commit (OpenPGP or SSH), so that a
	// daemon with git.verify accepts it; see ReadSigningKey. When Config
	// has git.verify, it is required and must be trusted by it.
	SignKey *SigningKey
}

// ReleaseOptions name the release to make.
type ReleaseOptions struct {
	RepoOptions
	Service string
	Version string
}

// RollbackOptions name the service to roll back.
type RollbackOptions struct {
	RepoOptions
	Service string
}

// Release sets the service's version and makes its idle group the active
// one, in the service's own file (only those two values change; comments
// and layout stay), validates the whole resulting desired state, and
// commits "release <service> <version> to group <X>" with a Tandem-Release
// trailer. It refuses a working tree that is not clean, a HEAD that does not
// validate, and a result that would not validate, changing nothing. It
// returns the new commit's hash; with Push, a failed push returns the hash
// of the commit that stays local, and the error.
func Release(ctx context.Context, o ReleaseOptions) (string, error) {
	return commitChange(ctx, o.RepoOptions, func(co *checkout) (*change, error) {
		svc, ok := co.set.Get(o.Service)
		if !ok {
			return nil, fmt.Errorf("service %s is not defined under %s (services: %s)", o.Service, co.dir, strings.Join(co.set.Names(), ", "))
		}
		if svc.Version == o.Version {
			return nil, fmt.Errorf("service %s already has version %s (active group %s): nothing to release", svc.Name, svc.Version, svc.Active)
		}
		from, to := svc.Active, svc.Active.Other()
		data, err := co.files().read(svc.Source.File)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", svc.Source.File, err)
		}
		edited, err := setFields(svc.Source.File, data, svc.Name, []field{{"version", o.Version}, {"active", string(to)}})
		if err != nil {
			return nil, err
		}
		return &change{
			edits: map[string][]byte{svc.Source.File: edited},
			message: fmt.Sprintf("release %s %s to group %s\n\n"+
				"Group %s receives %s and takes the traffic; group %s keeps %s, warm, as the rollback target.\n\n"+
				"%s: %s %s->%s\n",
				svc.Name, o.Version, to, to, o.Version, from, svc.Version, ReleaseTrailer, svc.Name, svc.Version, o.Version),
			check: func(set *spec.Set) error {
				if s, ok := set.Get(svc.Name); !ok || s.Version != o.Version || s.Active != to {
					return fmt.Errorf("editing %s did not set version %s and active %s as intended; edit it by hand", svc.Source.File, o.Version, to)
				}
				return nil
			},
		}, nil
	})
}

// Rollback commits the revert of the service's last release that is not
// already reverted (a commit with a Tandem-Release trailer for it, on the
// first-parent history of HEAD), in the form `git revert` gives it:
// `Revert "<subject>"` and "This reverts commit <hash>.". Lines changed
// since elsewhere in the same files are kept; if the released lines or
// their context changed since, it refuses. Like Release, it refuses an
// unclean tree or an invalid result and changes nothing then.
func Rollback(ctx context.Context, o RollbackOptions) (string, error) {
	return commitChange(ctx, o.RepoOptions, func(co *checkout) (*change, error) {
		rel, err := lastRelease(co.commit, o.Service)
		if err != nil {
			return nil, err
		}
		parent, err := rel.Parent(0)
		if err != nil {
			return nil, fmt.Errorf("reading the parent of release commit %s: %w", rel.Hash, err)
		}
		before, err := parent.Tree()
		if err != nil {
			return nil, fmt.Errorf("reading tree of %s: %w", parent.Hash, err)
		}
		after, err := rel.Tree()
		if err != nil {
			return nil, fmt.Errorf("reading tree of %s: %w", rel.Hash, err)
		}
		diffs, err := object.DiffTreeContext(ctx, before, after)
		if err != nil {
			return nil, fmt.Errorf("comparing release commit %s with its parent: %w", rel.Hash, err)
		}
		edits := map[string][]byte{}
		for _, d := range diffs {
			name := d.To.Name
			if action, err := d.Action(); err != nil || action != merkletrie.Modify {
				return nil, fmt.Errorf("release commit %s adds or deletes %s: only changes to existing files are rolled back; revert it by hand",
					shortHash(rel.Hash.String()), cmp.Or(name, d.From.Name))
			}
			old, err := treeFS{root: before}.read(name)
			if err != nil {
				return nil, fmt.Errorf("reading %s at %s: %w", name, parent.Hash, err)
			}
			released, err := treeFS{root: after}.read(name)
			if err != nil {
				return nil, fmt.Errorf("reading %s at %s: %w", name, rel.Hash, err)
			}
			cur, err := co.files().read(name)
			if err != nil {
				return nil, fmt.Errorf("cannot revert %s: %s no longer exists", shortHash(rel.Hash.String()), name)
			}
			if edits[name], err = reverseApply(old, released, cur); err != nil {
				return nil, fmt.Errorf("cannot revert %s cleanly: %s, %w; revert it by hand", shortHash(rel.Hash.String()), name, err)
			}
		}
		subject, _, _ := strings.Cut(strings.TrimSpace(rel.Message), "\n")
		return &change{
			edits:   edits,
			message: fmt.Sprintf("Revert \"%s\"\n\nThis reverts commit %s.\n", subject, rel.Hash),
		}, nil
	})
}

var revertsRE = regexp.MustCompile(`(?m)^This reverts commit ([0-9a-f]{40})\.?$`)

// lastRelease walks the first-parent history from c for the newest release
// of service that no later commit reverts. A reverted revert no longer
// counts as a revert.
func lastRelease(c *object.Commit, service string) (*object.Commit, error) {
	reverted := map[plumbing.Hash]bool{}
	for {
		if !reverted[c.Hash] {
			if m := revertsRE.FindStringSubmatch(c.Message); m != nil {
				reverted[plumbing.NewHash(m[1])] = true
			} else if releasedService(c.Message) == service {
				return c, nil
			}
		}
		if c.NumParents() == 0 {
			return nil, fmt.Errorf("no release of service %s to roll back: no commit with a %s trailer for it that is not reverted yet", service, ReleaseTrailer)
		}
		var err error
		if c, err = c.Parent(0); err != nil {
			return nil, fmt.Errorf("walking history: %w", err)
		}
	}
}

// releasedService reads the service name of a Tandem-Release trailer.
func releasedService(message string) string {
	name := ""
	for _, line := range strings.Split(message, "\n") {
		if v, ok := strings.CutPrefix(line, ReleaseTrailer+":"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				name = f[0]
			}
		}
	}
	return name
}

// checkout is a clean working tree at a valid HEAD on a branch.
type checkout struct {
	dir    string // of the service files
	repo   *git.Repository
	wt     *git.Worktree
	branch plumbing.ReferenceName
	commit *object.Commit
	tree   *object.Tree
	set    *spec.Set
}

func (co *checkout) files() treeFS { return treeFS{root: co.tree} }

// change is what Release or Rollback wants committed.
type change struct {
	edits   map[string][]byte // repository path -> new content of an existing file
	message string
	check   func(*spec.Set) error // optional: confirms the edit did what it meant to
}

func commitChange(ctx context.Context, o RepoOptions, plan func(*checkout) (*change, error)) (string, error) {
	o.RepoDir, o.Dir = cmp.Or(o.RepoDir, "."), cmp.Or(o.Dir, "services")
	if err := checkSigning(o); err != nil {
		return "", err
	}
	co, err := openCheckout(o)
	if err != nil {
		return "", err
	}
	author, err := commitAuthor(co.repo, o.Author)
	if err != nil {
		return "", err
	}
	ch, err := plan(co)
	if err != nil {
		return "", err
	}
	set, err := spec.Load(treeFS{root: co.tree, edits: ch.edits}, o.Dir, o.Config)
	if err != nil {
		return "", fmt.Errorf("the change would leave the desired state invalid; nothing was changed:\n%w", err)
	}
	if ch.check != nil {
		if err := ch.check(set); err != nil {
			return "", err
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	root := co.wt.Filesystem.Root()
	for _, name := range slices.Sorted(maps.Keys(ch.edits)) {
		file := filepath.Join(root, filepath.FromSlash(name))
		st, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("writing %s: %w", name, err)
		}
		if err := os.WriteFile(file, ch.edits[name], st.Mode().Perm()); err != nil {
			return "", fmt.Errorf("writing %s: %w", name, err)
		}
		if _, err := co.wt.Add(name); err != nil {
			return "", fmt.Errorf("staging %s: %w", name, err)
		}
	}
	commitOpts := &git.CommitOptions{Author: author}
	o.SignKey.commitOptions(commitOpts)
	h, err := co.wt.Commit(ch.message, commitOpts)
	if err != nil {
		return "", fmt.Errorf("committing: %w", err)
	}
	if o.Push {
		if err := push(ctx, co.repo, co.branch, o.Auth); err != nil {
			return h.String(), fmt.Errorf("committed %s locally, but pushing %s failed: %w", shortHash(h.String()), co.branch.Short(), err)
		}
	}
	return h.String(), nil
}

// checkSigning refuses, before anything is changed, a commit the daemon of
// o.Config would reject for its signature: unsigned, or signed by a key
// that git.verify does not trust.
func checkSigning(o RepoOptions) error {
	if o.Config == nil || o.Config.Git.Verify == nil {
		return nil
	}
	file := o.Config.FileName()
	if o.SignKey == nil {
		return fmt.Errorf("%s sets git.verify, so the daemon accepts only signed commits; sign this one with --sign-key FILE: "+
			"an OpenPGP secret key whose public key is in git.verify.keyring, or an OpenSSH private key listed in git.verify.allowedSigners", file)
	}
	v, err := newVerifier(o.Config.Git.Verify)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := o.SignKey.trustedBy(v); err != nil {
		return fmt.Errorf("the daemon of %s would reject a commit signed by --sign-key (%s): %w", file, o.SignKey, err)
	}
	return nil
}

// openCheckout opens the repository and refuses what must not be changed:
// a detached HEAD, an unclean working tree, or an invalid desired state.
func openCheckout(o RepoOptions) (*checkout, error) {
	repo, err := git.PlainOpenWithOptions(o.RepoDir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("opening repository %s: %w", o.RepoDir, err)
	}
	head, err := repo.Head()
	if err != nil {
		return nil, fmt.Errorf("reading HEAD of %s: %w", o.RepoDir, err)
	}
	if !head.Name().IsBranch() {
		return nil, fmt.Errorf("HEAD of %s is detached: check out the branch the daemon follows", o.RepoDir)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("opening working tree of %s: %w", o.RepoDir, err)
	}
	st, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("reading status of %s: %w", o.RepoDir, err)
	}
	if !st.IsClean() {
		var dirty []string
		for name, f := range st {
			if f.Staging != git.Unmodified || f.Worktree != git.Unmodified {
				dirty = append(dirty, name)
			}
		}
		slices.Sort(dirty)
		if len(dirty) > 5 {
			dirty = append(dirty[:5], "...")
		}
		return nil, fmt.Errorf("working tree %s is not clean (%s): commit, stash or remove the changes first", wt.Filesystem.Root(), strings.Join(dirty, ", "))
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return nil, fmt.Errorf("reading HEAD commit %s: %w", head.Hash(), err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", head.Hash(), err)
	}
	set, err := spec.Load(treeFS{root: tree}, o.Dir, o.Config)
	if err != nil {
		return nil, fmt.Errorf("the desired state at HEAD (%s) is invalid; fix it first:\n%w", shortHash(head.Hash().String()), err)
	}
	return &checkout{dir: o.Dir, repo: repo, wt: wt, branch: head.Name(), commit: commit, tree: tree, set: set}, nil
}

// commitAuthor is the given author, or the one of the git config.
func commitAuthor(repo *git.Repository, author *object.Signature) (*object.Signature, error) {
	if author != nil {
		return author, nil
	}
	cfg, err := repo.ConfigScoped(config.SystemScope)
	if err != nil {
		return nil, fmt.Errorf("reading git config: %w", err)
	}
	for _, id := range []struct{ Name, Email string }{{cfg.Author.Name, cfg.Author.Email}, {cfg.User.Name, cfg.User.Email}} {
		if id.Name != "" && id.Email != "" {
			return &object.Signature{Name: id.Name, Email: id.Email, When: time.Now()}, nil
		}
	}
	return nil, errors.New("no commit author: set user.name and user.email with git config")
}

// push sends the branch to origin; a non-fast-forward is refused.
func push(ctx context.Context, repo *git.Repository, branch plumbing.ReferenceName, a spec.GitAuth) error {
	rem, err := repo.Remote(remoteName)
	if err != nil {
		return fmt.Errorf("remote %s: %w", remoteName, err)
	}
	opts := &git.PushOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec(branch + ":" + branch)},
	}
	var secrets []string
	if a != (spec.GitAuth{}) {
		r, err := resolveRemote(rem.Config().URLs[0], a)
		if err != nil {
			return err
		}
		opts.Auth, secrets = r.auth, r.secrets
	}
	if err := repo.PushContext(ctx, opts); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		// The remote's URL comes from the working tree and may carry a token.
		return redactErr(err, secrets...)
	}
	return nil
}

// readPGPSigningKey reads an OpenPGP secret key (armored or binary; the
// first key with its secret part), decrypting it with passphrase.
func readPGPSigningKey(file string, data []byte, passphrase spec.Secret) (*openpgp.Entity, error) {
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	if err != nil {
		keys, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: not an OpenPGP key (armored or binary) nor an OpenSSH private key: %w", file, err)
	}
	for _, k := range keys {
		if k.PrivateKey == nil {
			continue
		}
		if k.PrivateKey.Encrypted {
			if passphrase.Empty() {
				return nil, fmt.Errorf("signing key %s is protected by a passphrase; give it with --sign-passphrase-env", file)
			}
			if err := k.DecryptPrivateKeys([]byte(passphrase.Reveal())); err != nil {
				return nil, fmt.Errorf("signing key %s: the passphrase does not decrypt it", file)
			}
		}
		return k, nil
	}
	return nil, fmt.Errorf("signing key %s holds no secret key (export it with gpg --export-secret-keys --armor)", file)
}
