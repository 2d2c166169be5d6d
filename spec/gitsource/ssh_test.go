package gitsource

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tandemhq/tandem/spec"
)

// sshRemote is a loopback SSH server that runs the real git-upload-pack for
// "exec" requests, as sshd does for a git user (git-shell accepts the same
// command form: git-upload-pack '<path>').
type sshRemote struct {
	addr    string
	hostKey ssh.PublicKey
}

func serveSSH(t *testing.T, root string, client ssh.PublicKey) sshRemote {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), client.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown client key")
	}}
	cfg.AddHostKey(signer)
	addr := serveLoopback(t, func(c net.Conn, wg *sync.WaitGroup) { serveSSHConn(c, cfg, root, wg) })
	return sshRemote{addr: addr, hostKey: signer.PublicKey()}
}

func serveSSHConn(c net.Conn, cfg *ssh.ServerConfig, root string, wg *sync.WaitGroup) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Go(func() { serveGitSession(ch, chReqs, root, wg) })
	}
}

func serveGitSession(ch ssh.Channel, reqs <-chan *ssh.Request, root string, wg *sync.WaitGroup) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if ssh.Unmarshal(req.Payload, &payload) != nil {
			_ = req.Reply(false, nil)
			return
		}
		repo, ok := strings.CutPrefix(payload.Command, "git-upload-pack '")
		repo, ok2 := strings.CutSuffix(repo, "'")
		if !ok || !ok2 || !strings.HasPrefix(filepath.Clean(repo), root) {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		cmd := exec.Command("git-upload-pack", repo)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return
		}
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Start(); err != nil {
			status = 127
		} else {
			wg.Go(func() {
				_, _ = io.Copy(stdin, ch)
				_ = stdin.Close()
			})
			if cmd.Wait() != nil {
				status = uint32(cmd.ProcessState.ExitCode())
			}
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func TestSSHTransportChecksTheHostKey(t *testing.T) {
	client := newSSHKey(t)
	clientPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(client.authorized))
	require.NoError(t, err)
	f := newFixture(t)
	srv := serveSSH(t, f.root, clientPub)
	_, otherPriv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	otherSigner, err := ssh.NewSignerFromKey(otherPriv)
	require.NoError(t, err)

	knownHosts := func(addr string, key ssh.PublicKey) string {
		return writeFile(t, "known_hosts", []byte(knownhosts.Line([]string{addr}, key)+"\n"))
	}
	url := "ssh://git@" + srv.addr + f.bare
	for _, tc := range []struct {
		name       string
		knownHosts string
		fetchErr   string // "": the fetch succeeds
	}{
		{name: "a pinned host key fetches", knownHosts: knownHosts(srv.addr, srv.hostKey)},
		{name: "a different host key is refused", knownHosts: knownHosts(srv.addr, otherSigner.PublicKey()), fetchErr: "knownhosts: key mismatch"},
		{name: "an unknown host is refused", knownHosts: knownHosts("127.0.0.2:22", srv.hostKey), fetchErr: "knownhosts: key is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gitConfig(url)
			cfg.Auth = spec.GitAuth{SSHKeyFile: client.file, KnownHostsFile: tc.knownHosts}
			s, err := New(cfg, nil, t.TempDir(), nil)
			require.NoError(t, err)
			s.retryBase = time.Hour
			start(t, s)
			if tc.fetchErr == "" {
				st := waitFor(t, s, "the first good revision", goodIs(f.head()))
				require.Equal(t, "1.0.0/A", versionOf(t, st.Good, "user"))
				return
			}
			st := waitFor(t, s, "the fetch failure", func(st Status) bool { return st.FetchErr != nil })
			require.ErrorContains(t, st.FetchErr, tc.fetchErr)
			require.Nil(t, st.Good)
		})
	}
}

func TestRemoteCredentialsMustFitTheURL(t *testing.T) {
	key := newSSHKey(t)
	hosts := writeFile(t, "known_hosts", []byte("example.com "+key.authorized+"\n"))
	t.Setenv("T_SET", "value")
	for _, tc := range []struct {
		name string
		url  string
		auth spec.GitAuth
		err  string // "": accepted
	}{
		{name: "ssh with a key and known hosts is accepted", url: "ssh://git@example.com/fleet.git", auth: spec.GitAuth{SSHKeyFile: key.file, KnownHostsFile: hosts}},
		{name: "scp-like ssh is accepted", url: "git@example.com:ops/fleet.git", auth: spec.GitAuth{SSHKeyFile: key.file, KnownHostsFile: hosts}},
		{name: "ssh without known hosts is refused", url: "ssh://git@example.com/fleet.git", auth: spec.GitAuth{SSHKeyFile: key.file},
			err: "git.auth.knownHostsFile: is required for an ssh URL"},
		{name: "ssh with a missing known hosts file is refused", url: "ssh://git@example.com/fleet.git", auth: spec.GitAuth{SSHKeyFile: key.file, KnownHostsFile: "/nonexistent/known_hosts"},
			err: "git.auth.knownHostsFile: stat /nonexistent/known_hosts"},
		{name: "ssh without a key is refused", url: "ssh://git@example.com/fleet.git", auth: spec.GitAuth{KnownHostsFile: hosts},
			err: "git.auth.sshKeyFile: is required for an ssh URL"},
		{name: "ssh with a token is refused", url: "ssh://git@example.com/fleet.git", auth: spec.GitAuth{TokenEnv: "T_SET", SSHKeyFile: key.file, KnownHostsFile: hosts},
			err: "apply to http(s) URLs, not ssh"},
		{name: "https with an ssh key is refused", url: "https://example.com/fleet.git", auth: spec.GitAuth{SSHKeyFile: key.file},
			err: "apply to ssh URLs, not https"},
		{name: "https with a password in the URL is refused", url: "https://bob:hunter2@example.com/fleet.git",
			err: "git.url: must not contain a password"},
		{name: "https with password and token is refused", url: "https://example.com/fleet.git", auth: spec.GitAuth{UsernameEnv: "T_SET", PasswordEnv: "T_SET", TokenEnv: "T_SET"},
			err: "git.auth: set only one of passwordEnv and tokenEnv"},
		{name: "https with a password but no user is refused", url: "https://example.com/fleet.git", auth: spec.GitAuth{PasswordEnv: "T_SET"},
			err: "git.auth.passwordEnv: needs usernameEnv"},
		{name: "https with an unset token variable is refused", url: "https://example.com/fleet.git", auth: spec.GitAuth{TokenEnv: "T_UNSET_TOKEN"},
			err: "git.auth.tokenEnv: environment variable T_UNSET_TOKEN is not set"},
		{name: "a file URL with credentials is refused", url: "file:///srv/fleet.git", auth: spec.GitAuth{TokenEnv: "T_SET"},
			err: "git.auth: a file URL takes no credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolveRemote(tc.url, tc.auth)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}
