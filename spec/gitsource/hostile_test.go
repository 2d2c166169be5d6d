package gitsource

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/spectest"
)

// A token in git.url is refused, and the refusal does not repeat it.
func TestCredentialsInTheURLAreRefusedWithoutEchoingThem(t *testing.T) {
	for _, url := range []string{
		"https://deployer:tok-SECRET-1@git.example.com/desired.git",
		"https://tok-SECRET-1@git.example.com/desired.git",
		"ssh://git:tok-SECRET-1@git.example.com/desired.git",
	} {
		_, err := New(gitConfig(url), nil, t.TempDir(), nil)
		require.ErrorContains(t, err, "git.url: must not contain")
		require.ErrorContains(t, err, "git.auth.tokenEnv")
		require.NotContains(t, err.Error(), "tok-SECRET-1")
	}
}

// An error of go-git that carries a URL with a token (here: the origin of
// the working tree that `tandem release --push` pushes to) reaches the
// caller without it.
func TestPushErrorCarriesNoCredentialsOfTheRemoteURL(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens: the push fails to connect
	for _, url := range []string{
		"http://tok-SECRET-2@" + addr + "/desired.git",
		"http://deployer:tok-SECRET-2@" + addr + "/desired.git",
	} {
		runGit(t, f.work, "remote", "set-url", "origin", url)
		opts := repoOptions(f)
		opts.Push = true
		hash, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1." + fmt.Sprint(len(url))})
		require.NotEmpty(t, hash, "committed locally")
		require.Error(t, err)
		require.NotContains(t, err.Error(), "tok-SECRET-2")
		require.Contains(t, err.Error(), addr, "the error still names the remote")
	}
}

func TestRedactTextRemovesURLCredentialsAndSecrets(t *testing.T) {
	for in, want := range map[string]string{
		`Get "https://ghp_abc123@github.com/x.git/info/refs": EOF`:       `Get "https://<redacted>@github.com/x.git/info/refs": EOF`,
		"dial https://user:pa55word@h:443/r failed":                      "dial https://<redacted>@h:443/r failed",
		"ssh://git:pw@h/r unreachable":                                   "ssh://git:<redacted>@h/r unreachable",
		"ssh://git@h/r and git@h:r are logins":                           "ssh://git@h/r and git@h:r are logins",
		"server said: bad token s3cr3t-value":                            "server said: bad token <redacted>",
		"https://h/path@v1 has no userinfo (the @ is after the first /)": "https://h/path@v1 has no userinfo (the @ is after the first /)",
	} {
		require.Equal(t, want, redactText(in, "s3cr3t-value"))
	}
}

// A fetch whose pack passes git.maxFetchBytes fails, keeps nothing in the
// cache and leaves the revision in force.
func TestFetchLargerThanTheLimitFailsAndKeepsNothing(t *testing.T) {
	for _, transport := range []string{"file", "http"} {
		t.Run(transport, func(t *testing.T) {
			f := newFixture(t)
			url := "file://" + f.bare
			if transport == "http" {
				url = serveHTTP(t, f.root, "", "").url()
			}
			cfg := gitConfig(url)
			cfg.MaxFetchBytes = 1 << 20
			s, err := New(cfg, nil, t.TempDir(), nil)
			require.NoError(t, err)
			good := f.head()
			s.pass(context.Background())
			require.Equal(t, good, s.Current().Good.Hash)

			noise := make([]byte, 2<<20) // random: does not compress
			_, _ = rand.Read(noise)
			f.commit("add a large file", map[string]string{"services/blob.bin": string(noise)})
			s.pass(context.Background())
			st := s.Current()
			require.ErrorContains(t, st.FetchErr, "the pack passed 1048576 bytes (git.maxFetchBytes); nothing was kept")
			require.Equal(t, good, st.Good.Hash)
			require.Equal(t, good, st.Head.Hash, "the large head was not stored")
			leftovers, err := filepath.Glob(filepath.Join(s.cache, "objects", "pack", "tmp_*"))
			require.NoError(t, err)
			require.Empty(t, leftovers)
		})
	}
}

// The alias bomb committed to the branch is rejected with a located
// problem when fetched, and again when the daemon restarts with it in its
// cache (it restores before any fetch): no crash loop, bounded memory.
func TestCachedAliasBombIsRejectedCleanlyAtStart(t *testing.T) {
	f := newFixture(t)
	cfg := gitConfig("file://" + f.bare)
	state := t.TempDir()
	s, err := New(cfg, nil, state, nil)
	require.NoError(t, err)
	good := f.head()
	s.pass(context.Background())
	bomb := f.commit("add a bomb", map[string]string{"services/bomb.yaml": string(spectest.AliasBomb(30_000, 20_000))})
	s.pass(context.Background())
	st := s.Current()
	require.Equal(t, bomb, st.Head.Hash)
	require.Equal(t, ReasonInvalid, st.Rejected.Reason)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	again, err := New(cfg, nil, state, nil)
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	t.Logf("restart allocated %d MiB", (after.TotalAlloc-before.TotalAlloc)>>20)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(512<<20))

	st = again.Current()
	require.Equal(t, good, st.Good.Hash)
	require.Equal(t, bomb, st.Head.Hash)
	require.Equal(t, ReasonInvalid, st.Rejected.Reason)
	ps, ok := spec.AsProblems(st.Rejected.Err)
	require.True(t, ok)
	require.Regexp(t, `^services/bomb\.yaml:7: groups\.A\.instances\[\d+\]: the desired state is too large or uses too many aliases`, ps[0].String())
}
