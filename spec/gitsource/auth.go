package gitsource

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/tandemhq/tandem/spec"
)

// remote is a repository URL with the credentials to reach it.
type remote struct {
	url  string
	auth transport.AuthMethod // nil: anonymous (file://, git://, public http)
	// local is the repository directory when the URL is a local path or
	// file:// URL; its refs are watched with fsnotify.
	local string
	// plaintext is set for http:// with credentials: they travel unencrypted.
	plaintext bool
	// secrets are the credential values, removed from every error text.
	secrets []string
}

// resolveRemote checks the URL against the credentials configured for it and
// reads them from the environment. Credentials that do not apply to the URL's
// protocol are refused rather than ignored, so a typo cannot silently turn
// authentication off; ssh requires a known_hosts file, since accepting any
// host key would let anyone on the path serve the desired state.
func resolveRemote(rawURL string, a spec.GitAuth) (*remote, error) {
	ep, err := transport.NewEndpoint(rawURL)
	if err != nil {
		return nil, redactErr(fmt.Errorf("git.url: %w", err))
	}
	if what := spec.URLCredentials(rawURL); what != "" || ep.Password != "" {
		return nil, fmt.Errorf("git.url: must not contain %s; name environment variables in git.auth.tokenEnv (or git.auth.usernameEnv and git.auth.passwordEnv)", cmp.Or(what, "a password"))
	}
	httpAuth := a.UsernameEnv != "" || a.PasswordEnv != "" || a.TokenEnv != ""
	sshAuth := a.SSHKeyFile != "" || a.SSHPassphraseEnv != "" || a.KnownHostsFile != ""
	r := &remote{url: rawURL}
	switch ep.Protocol {
	case "http", "https":
		if sshAuth {
			return nil, fmt.Errorf("git.auth: sshKeyFile, sshPassphraseEnv and knownHostsFile apply to ssh URLs, not %s", ep.Protocol)
		}
		r.auth, err = basicAuth(a)
		r.plaintext = r.auth != nil && ep.Protocol == "http"
		if b, ok := r.auth.(*githttp.BasicAuth); ok {
			r.secrets = []string{b.Password}
		}
	case "ssh":
		if httpAuth {
			return nil, errors.New("git.auth: usernameEnv, passwordEnv and tokenEnv apply to http(s) URLs, not ssh")
		}
		r.auth, err = sshAuthFor(ep, a)
	case "file", "git":
		if httpAuth || sshAuth {
			return nil, fmt.Errorf("git.auth: a %s URL takes no credentials", ep.Protocol)
		}
		if ep.Protocol == "file" {
			r.local = ep.Path
		}
	default:
		return nil, fmt.Errorf("git.url: unsupported protocol %q (use https, ssh, git, file or a local path)", ep.Protocol)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// basicAuth builds HTTP basic credentials: a token is sent as the password,
// with usernameEnv's value or "git" as the user name (GitHub, GitLab and
// Gitea accept any user name with a personal access token).
func basicAuth(a spec.GitAuth) (transport.AuthMethod, error) {
	if a.PasswordEnv != "" && a.TokenEnv != "" {
		return nil, errors.New("git.auth: set only one of passwordEnv and tokenEnv")
	}
	if a.UsernameEnv == "" && a.PasswordEnv != "" {
		return nil, errors.New("git.auth.passwordEnv: needs usernameEnv")
	}
	if a.UsernameEnv != "" && a.PasswordEnv == "" && a.TokenEnv == "" {
		return nil, errors.New("git.auth.usernameEnv: needs passwordEnv or tokenEnv")
	}
	user, err := spec.SecretFromEnv("git.auth.usernameEnv", a.UsernameEnv)
	if err != nil {
		return nil, err
	}
	password, err := spec.SecretFromEnv("git.auth.passwordEnv", a.PasswordEnv)
	if err != nil {
		return nil, err
	}
	token, err := spec.SecretFromEnv("git.auth.tokenEnv", a.TokenEnv)
	if err != nil {
		return nil, err
	}
	if password.Empty() && token.Empty() {
		return nil, nil
	}
	name := user.Reveal()
	if name == "" {
		name = "git"
	}
	pass := password
	if pass.Empty() {
		pass = token
	}
	return &githttp.BasicAuth{Username: name, Password: pass.Reveal()}, nil
}

// sshAuthFor loads the private key and pins host keys to the known_hosts
// file (only the algorithms it lists for the host are negotiated).
func sshAuthFor(ep *transport.Endpoint, a spec.GitAuth) (transport.AuthMethod, error) {
	if a.SSHKeyFile == "" {
		return nil, errors.New("git.auth.sshKeyFile: is required for an ssh URL")
	}
	if a.KnownHostsFile == "" {
		return nil, errors.New("git.auth.knownHostsFile: is required for an ssh URL; host keys are always checked (ssh-keyscan HOST >known_hosts, then verify the fingerprint)")
	}
	passphrase, err := spec.SecretFromEnv("git.auth.sshPassphraseEnv", a.SSHPassphraseEnv)
	if err != nil {
		return nil, err
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	keys, err := gitssh.NewPublicKeysFromFile(user, a.SSHKeyFile, passphrase.Reveal())
	if err != nil {
		return nil, fmt.Errorf("git.auth.sshKeyFile: reading private key %s: %w", a.SSHKeyFile, err)
	}
	if _, err := os.Stat(a.KnownHostsFile); err != nil {
		return nil, fmt.Errorf("git.auth.knownHostsFile: %w", err)
	}
	db, err := gitssh.NewKnownHostsDb(a.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("git.auth.knownHostsFile: reading %s: %w", a.KnownHostsFile, err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	keys.HostKeyCallback = db.HostKeyCallback()
	keys.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port)))
	return keys, nil
}
