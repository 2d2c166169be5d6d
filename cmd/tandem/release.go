package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// repoFlags are the flags release and rollback share.
type repoFlags struct {
	repo, path, config string
	push               bool
	signKey, signPass  string
}

func (f *repoFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.repo, "repo", ".", "working tree of the desired-state repository")
	fs.StringVar(&f.path, "path", "", "directory of service files in the repository (default: git.path of --config, else services)")
	fs.StringVar(&f.config, "config", "", "daemon config (tandem.yaml): validate as the daemon will, and use its git.path and credentials for --push")
	fs.BoolVar(&f.push, "push", false, "push the new commit to origin")
	fs.StringVar(&f.signKey, "sign-key", "", "sign the commit with this key `file`, for a daemon with git.verify: an OpenSSH private key (gpg.format=ssh) or an OpenPGP secret key (armored or binary); required when --config sets git.verify")
	fs.StringVar(&f.signPass, "sign-passphrase-env", "", "environment `variable` holding the passphrase of --sign-key")
}

func (f *repoFlags) options() (gitsource.RepoOptions, error) {
	o := gitsource.RepoOptions{RepoDir: f.repo, Dir: f.path, Push: f.push}
	if f.config != "" {
		cfg, err := spec.LoadConfig(f.config)
		if err != nil {
			return o, err
		}
		o.Config, o.Auth = cfg, cfg.Git.Auth
		if o.Dir == "" {
			o.Dir = cfg.Git.Path
		}
	}
	if o.Dir == "" {
		o.Dir = "services"
	}
	if f.signKey == "" {
		if f.signPass != "" {
			return o, usagef("--sign-passphrase-env needs --sign-key")
		}
		return o, nil
	}
	pass, err := spec.SecretFromEnv("--sign-passphrase-env", f.signPass)
	if err != nil {
		return o, err
	}
	o.SignKey, err = gitsource.ReadSigningKey(f.signKey, pass)
	return o, err
}

func init() {
	var rel repoFlags
	register(&command{
		name: "release",
		args: "SERVICE VERSION",
		summary: `Commit a release: set the service's version and flip its active group, so that the idle
group receives the new version. Only those two values of the service's file change. The result is
validated first; a dirty or invalid tree is refused and nothing is committed.`,
		flags: rel.register,
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 2 {
				return usagef("expected SERVICE and VERSION, got %d arguments", len(args))
			}
			o, err := rel.options()
			if err != nil {
				return report(env, err)
			}
			hash, err := gitsource.Release(ctx, gitsource.ReleaseOptions{RepoOptions: o, Service: args[0], Version: args[1]})
			return committed(env, hash, err)
		},
	})

	var rb repoFlags
	register(&command{
		name: "rollback",
		args: "SERVICE",
		summary: `Commit the git revert of the service's last release: traffic goes back to the warm group,
which still runs the previous version, so no deploy is needed.`,
		flags: rb.register,
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usagef("expected SERVICE, got %d arguments", len(args))
			}
			o, err := rb.options()
			if err != nil {
				return report(env, err)
			}
			hash, err := gitsource.Rollback(ctx, gitsource.RollbackOptions{RepoOptions: o, Service: args[0]})
			return committed(env, hash, err)
		},
	})
}

func committed(env *cli, hash string, err error) error {
	if hash != "" {
		fmt.Fprintf(env.stdout, "committed %s\n", hash)
	}
	if err != nil {
		return report(env, err)
	}
	return nil
}
