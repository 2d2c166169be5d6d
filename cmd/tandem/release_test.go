package main

import (
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// gitIn runs the git CLI in dir, isolated from the machine's configuration.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Alice", "GIT_AUTHOR_EMAIL=alice@example.com", "GIT_COMMITTER_NAME=Alice", "GIT_COMMITTER_EMAIL=alice@example.com")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

// With --config naming a daemon config that sets git.verify, release
// refuses to commit unsigned (naming the field and how to sign), and with
// --sign-key an OpenSSH key of the allowed signers commits a signature
// that git verify-commit accepts.
func TestReleaseUnderAVerifyingConfigRequiresATrustedSigningKey(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	require.NoError(t, os.MkdirAll(filepath.Join(repo, "services"), 0o755))
	for _, name := range []string{"gateway.yaml", "push.yaml", "user-service.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../examples/services", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(repo, "services", name), data, 0o644))
	}
	gitIn(t, repo, "init", "-q", "-b", "main")
	gitIn(t, repo, "config", "user.name", "Alice")
	gitIn(t, repo, "config", "user.email", "alice@example.com")
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "-m", "desired state")
	head := gitIn(t, repo, "rev-parse", "HEAD")

	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "id_ed25519")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600))
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	signers := filepath.Join(dir, "allowed_signers")
	require.NoError(t, os.WriteFile(signers, append([]byte("alice@example.com "), ssh.MarshalAuthorizedKey(signer.PublicKey())...), 0o644))

	example, err := os.ReadFile("../../examples/tandem.yaml")
	require.NoError(t, err)
	config := filepath.Join(dir, "tandem.yaml")
	require.NoError(t, os.WriteFile(config, []byte(strings.Replace(string(example), "git:\n", "git:\n  verify: {allowedSigners: "+signers+"}\n", 1)), 0o644))

	code, _, errOut := tandem(t, "release", "--repo", repo, "--config", config, "push", "3.3.0")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, config+" sets git.verify, so the daemon accepts only signed commits; sign this one with --sign-key FILE")
	require.Equal(t, head, gitIn(t, repo, "rev-parse", "HEAD"), "nothing was committed")

	code, out, errOut := tandem(t, "release", "--repo", repo, "--config", config, "--sign-key", keyFile, "push", "3.3.0")
	require.Equal(t, exitOK, code, errOut)
	hash := strings.TrimPrefix(strings.TrimSpace(out), "committed ")
	verified := gitIn(t, repo, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+signers, "verify-commit", "-v", hash)
	require.Contains(t, verified, `Good "git" signature for alice@example.com`)
}
