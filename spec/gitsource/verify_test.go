package gitsource

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/tandemhq/tandem/spec"
)

// pgpKey is an OpenPGP key made with go-crypto; gpg signs with it through
// the git CLI.
type pgpKey struct {
	entity      *openpgp.Entity
	fingerprint string
}

func newPGPKey(t *testing.T, name, email string) pgpKey {
	t.Helper()
	// EdDSA (legacy, v4) keys: what gpg 2.2 understands.
	e, err := openpgp.NewEntity(name, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	require.NoError(t, err)
	return pgpKey{entity: e, fingerprint: fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)}
}

func (k pgpKey) armored(t *testing.T, private bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	blockType := openpgp.PublicKeyType
	if private {
		blockType = openpgp.PrivateKeyType
	}
	w, err := armor.Encode(&buf, blockType, nil)
	require.NoError(t, err)
	if private {
		require.NoError(t, k.entity.SerializePrivate(w, nil))
	} else {
		require.NoError(t, k.entity.Serialize(w))
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// gnupgHome imports the secret keys into a fresh GNUPGHOME (short path: it
// holds the agent's socket) and stops the agent when the test ends.
func gnupgHome(t *testing.T, keys ...pgpKey) []string {
	t.Helper()
	home, err := os.MkdirTemp("", "gpg")
	require.NoError(t, err)
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "all")
		kill.Env = append(os.Environ(), env...)
		_ = kill.Run()
		_ = os.RemoveAll(home)
	})
	for _, k := range keys {
		imp := exec.Command("gpg", "--batch", "--import")
		imp.Env = append(os.Environ(), env...)
		imp.Stdin = bytes.NewReader(k.armored(t, true))
		out, err := imp.CombinedOutput()
		require.NoError(t, err, "gpg --import: %s", out)
	}
	return env
}

func pgpSigning(k pgpKey) []string {
	return []string{"-c", "gpg.format=openpgp", "-c", "gpg.program=gpg", "-c", "user.signingkey=" + k.fingerprint, "-c", "commit.gpgsign=true"}
}

// sshKey is an ed25519 key whose private half ssh-keygen signs with.
type sshKey struct {
	file        string
	authorized  string // keytype base64
	fingerprint string
}

func newSSHKey(t *testing.T) sshKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "id_ed25519")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(block), 0o600))
	sp, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	return sshKey{file: file, authorized: string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sp))), fingerprint: ssh.FingerprintSHA256(sp)}
}

func sshSigning(k sshKey) []string {
	return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + k.file, "-c", "commit.gpgsign=true"}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

func TestSignedHeadsAreInForceAndOthersAreRejectedNamingTheKey(t *testing.T) {
	alice, mallory := newPGPKey(t, "Alice Example", "alice@example.com"), newPGPKey(t, "Mallory", "mallory@example.com")
	gpgEnv := gnupgHome(t, alice, mallory)
	sshAlice, sshMallory := newSSHKey(t), newSSHKey(t)
	keyring := writeFile(t, "keyring.asc", alice.armored(t, false))
	signers := writeFile(t, "allowed_signers", []byte("# the release team\nalice@example.com "+sshAlice.authorized+"\n"))

	f := newFixture(t) // its first commit is unsigned
	cfg := gitConfig("file://" + f.bare)
	cfg.Verify = &spec.GitVerify{Keyring: keyring, AllowedSigners: signers}
	s, err := New(cfg, nil, t.TempDir(), nil)
	require.NoError(t, err)
	start(t, s)
	st := waitFor(t, s, "the unsigned first head", func(st Status) bool { return st.Head != nil })
	require.Nil(t, st.Good, "an unsigned head is never in force")
	require.Equal(t, ReasonSignature, st.Rejected.Reason)

	var good string
	for i, tc := range []struct {
		name    string
		env     []string
		options []string
		signer  string // in force, with this signer; else rejected
		key     string
		reason  string
	}{
		{name: "signed by a trusted OpenPGP key is in force", env: gpgEnv, options: pgpSigning(alice), signer: "openpgp " + alice.fingerprint + " Alice Example <alice@example.com>"},
		{name: "unsigned is rejected", reason: "unsigned; a signature by a trusted key is required"},
		{name: "signed by an OpenPGP key outside the keyring is rejected", env: gpgEnv, options: pgpSigning(mallory), key: mallory.fingerprint, reason: "signed by a key that is not in git.verify.keyring"},
		{name: "signed by an allowed SSH key is in force", options: sshSigning(sshAlice), signer: "ssh " + sshAlice.fingerprint + " alice@example.com"},
		{name: "signed by an SSH key that is not allowed is rejected", options: sshSigning(sshMallory), key: sshMallory.fingerprint, reason: "signed by a key that is not in git.verify.allowedSigners"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			version := fmt.Sprintf("1.%d.0", i+1)
			hash := f.commitWith(tc.env, tc.options, "release user "+version, map[string]string{"services/user.yaml": service("user", "B", version, 1)})
			st := waitFor(t, s, "the new head", func(st Status) bool { return st.Head != nil && st.Head.Hash == hash })
			if tc.signer != "" {
				require.Nil(t, st.Rejected)
				require.Equal(t, hash, st.Good.Hash)
				require.Equal(t, tc.signer, st.Good.Signer)
				good = hash
				return
			}
			require.Equal(t, good, hashOf(st.Good), "the last good revision stays in force")
			require.Equal(t, ReasonSignature, st.Rejected.Reason)
			var se *SignatureError
			require.True(t, errors.As(st.Rejected, &se), "%v", st.Rejected)
			require.Equal(t, hash, se.Commit)
			require.Equal(t, tc.key, se.Key)
			require.Equal(t, tc.reason, se.Reason)
			require.Contains(t, st.Rejected.Error(), "commit "+hash[:12])
		})
	}

	repo, err := gogit.PlainOpen(f.work)
	require.NoError(t, err)
	commitOf := func(subject string) *object.Commit {
		iter, err := repo.Log(&gogit.LogOptions{})
		require.NoError(t, err)
		defer iter.Close()
		for {
			c, err := iter.Next()
			require.NoError(t, err, "no commit %q", subject)
			if c.Message == subject+"\n" {
				return c
			}
		}
	}
	pgpSigned, sshSigned := commitOf("release user 1.1.0"), commitOf("release user 1.4.0")
	for _, tc := range []struct {
		name   string
		verify spec.GitVerify
		commit *object.Commit
		tamper bool
		reason string
	}{
		{name: "an OpenPGP signature without a keyring is rejected", verify: spec.GitVerify{AllowedSigners: signers}, commit: pgpSigned,
			reason: "signed with OpenPGP, but git.verify.keyring is not configured"},
		{name: "an SSH signature without allowed signers is rejected", verify: spec.GitVerify{Keyring: keyring}, commit: sshSigned,
			reason: "signed with SSH, but git.verify.allowedSigners is not configured"},
		{name: "an SSH key allowed only for another namespace is rejected", commit: sshSigned,
			verify: spec.GitVerify{AllowedSigners: writeFile(t, "ns", []byte(`alice@example.com namespaces="file" `+sshAlice.authorized))},
			reason: `signing key is in git.verify.allowedSigners, but not for namespace "git" at the commit time ` + sshSigned.Committer.When.UTC().Format("2006-01-02T15:04:05Z")},
		{name: "an SSH key expired before the commit is rejected", commit: sshSigned,
			verify: spec.GitVerify{AllowedSigners: writeFile(t, "old", []byte(`alice@example.com valid-before="20200101Z" `+sshAlice.authorized))},
			reason: `signing key is in git.verify.allowedSigners, but not for namespace "git" at the commit time ` + sshSigned.Committer.When.UTC().Format("2006-01-02T15:04:05Z")},
		{name: "a tampered OpenPGP-signed commit is rejected", verify: spec.GitVerify{Keyring: keyring}, commit: pgpSigned, tamper: true,
			reason: "OpenPGP signature does not verify: openpgp: invalid signature: EdDSA verification failure"},
		{name: "a tampered SSH-signed commit is rejected", verify: spec.GitVerify{AllowedSigners: signers}, commit: sshSigned, tamper: true,
			reason: "SSH signature does not verify: ssh: signature did not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := newVerifier(&tc.verify)
			require.NoError(t, err)
			c := *tc.commit
			if tc.tamper {
				c.Message = "release user 9.9.9\n"
			}
			_, err = v.check(&c)
			var se *SignatureError
			require.True(t, errors.As(err, &se), "%v", err)
			require.Equal(t, tc.reason, se.Reason)
		})
	}
}

func TestVerifyConfigurationErrorsNameTheField(t *testing.T) {
	sshAlice := newSSHKey(t)
	for _, tc := range []struct {
		name   string
		verify spec.GitVerify
		err    string
	}{
		{name: "neither keyring nor allowed signers", err: "git.verify: must set keyring or allowedSigners"},
		{name: "a missing keyring file", verify: spec.GitVerify{Keyring: "/nonexistent/keyring.asc"}, err: "git.verify.keyring: open /nonexistent/keyring.asc"},
		{name: "a keyring that is not armored OpenPGP", verify: spec.GitVerify{Keyring: writeFile(t, "k", []byte("not a key"))}, err: "git.verify.keyring: reading armored OpenPGP public keys"},
		{name: "allowed signers with no keys", verify: spec.GitVerify{AllowedSigners: writeFile(t, "a", []byte("# nobody\n"))}, err: "lists no keys"},
		{name: "allowed signers with a bad key", verify: spec.GitVerify{AllowedSigners: writeFile(t, "b", []byte("alice@example.com ssh-ed25519 AAAAnotbase64!\n"))}, err: ":1: public key:"},
		{name: "allowed signers naming a certificate authority", verify: spec.GitVerify{AllowedSigners: writeFile(t, "c", []byte("\n*@example.com cert-authority "+sshAlice.authorized+"\n"))}, err: ":2: cert-authority is not supported"},
		{name: "allowed signers with an unknown option", verify: spec.GitVerify{AllowedSigners: writeFile(t, "d", []byte("alice@example.com colour=\"red\" "+sshAlice.authorized+"\n"))}, err: `:1: unknown option "colour"`},
		{name: "allowed signers with a bad time", verify: spec.GitVerify{AllowedSigners: writeFile(t, "e", []byte("alice@example.com valid-after=\"2020\" "+sshAlice.authorized+"\n"))}, err: `option valid-after: "2020" is not YYYYMMDD[HHMM[SS]][Z]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(&tc.verify)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestSignedReleaseAndRollbackAreAcceptedByAVerifyingSource(t *testing.T) {
	alice, mallory := newPGPKey(t, "Alice Example", "alice@example.com"), newPGPKey(t, "Mallory", "mallory@example.com")
	keyFile := writeFile(t, "alice.asc", alice.armored(t, true))
	key, err := ReadSigningKey(keyFile, "")
	require.NoError(t, err)

	f := newFixture(t)
	v, err := newVerifier(&spec.GitVerify{Keyring: writeFile(t, "keyring.asc", alice.armored(t, false))})
	require.NoError(t, err)
	repo, err := gogit.PlainOpen(f.work)
	require.NoError(t, err)
	check := func(hash string) (string, error) {
		c, err := repo.CommitObject(plumbing.NewHash(hash))
		require.NoError(t, err)
		return v.check(c)
	}

	opts := repoOptions(f)
	opts.SignKey = key
	rel, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
	signer, err := check(rel)
	require.NoError(t, err, "the daemon's verification accepts the signed release")
	require.Equal(t, "openpgp "+alice.fingerprint+" Alice Example <alice@example.com>", signer)
	// gpg, through the git CLI, agrees that the signature is good.
	out := runGitEnv(t, f.work, gnupgHome(t, alice), "-c", "gpg.program=gpg", "verify-commit", "--raw", rel)
	require.Contains(t, out, "GOODSIG")

	back, err := Rollback(context.Background(), RollbackOptions{RepoOptions: opts, Service: "user"})
	require.NoError(t, err)
	_, err = check(back)
	require.NoError(t, err, "the signed rollback is accepted too")

	// Unsigned, or signed by a key outside the keyring: refused.
	opts.SignKey = nil
	unsigned, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.2.0"})
	require.NoError(t, err)
	_, err = check(unsigned)
	require.ErrorContains(t, err, "unsigned")
	opts.SignKey = PGPSigningKey(mallory.entity)
	other, err := Rollback(context.Background(), RollbackOptions{RepoOptions: opts, Service: "user"})
	require.NoError(t, err)
	_, err = check(other)
	require.ErrorContains(t, err, "not in git.verify.keyring")
}

func TestReadSigningKeyNamesWhatIsWrong(t *testing.T) {
	alice := newPGPKey(t, "Alice Example", "alice@example.com")
	protected := newPGPKey(t, "Bob Example", "bob@example.com")
	require.NoError(t, protected.entity.EncryptPrivateKeys([]byte("correct horse"), nil))
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, protected.entity.SerializePrivateWithoutSigning(w, nil))
	require.NoError(t, w.Close())
	protectedFile := writeFile(t, "bob.asc", buf.Bytes())

	key, err := ReadSigningKey(protectedFile, "correct horse")
	require.NoError(t, err)
	require.False(t, key.pgp.PrivateKey.Encrypted, "decrypted, ready to sign")
	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("correct horse"))
	require.NoError(t, err)
	protectedSSH := writeFile(t, "id_protected", pem.EncodeToMemory(block))
	sshKey, err := ReadSigningKey(protectedSSH, "correct horse")
	require.NoError(t, err)
	require.NotNil(t, sshKey.ssh)
	for _, tc := range []struct {
		name, file string
		pass       spec.Secret
		want       string
	}{
		{"a missing file", filepath.Join(t.TempDir(), "none.asc"), "", "signing key: open "},
		{"not a key", writeFile(t, "junk.asc", []byte("hello\n")), "", "not an OpenPGP key (armored or binary)"},
		{"a public key only", writeFile(t, "pub.asc", alice.armored(t, false)), "", "holds no secret key"},
		{"a protected key without its passphrase", protectedFile, "", "is protected by a passphrase; give it with --sign-passphrase-env"},
		{"a protected key with a wrong passphrase", protectedFile, "wrong horse", "the passphrase does not decrypt it"},
		{"a protected SSH key without its passphrase", protectedSSH, "", "is protected by a passphrase; give it with --sign-passphrase-env"},
		{"a protected SSH key with a wrong passphrase", protectedSSH, "wrong horse", "the passphrase does not decrypt it"},
		{"a broken SSH key", writeFile(t, "id_broken", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")), "", "not an OpenSSH private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSigningKey(tc.file, tc.pass)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "horse")
		})
	}
}

// A signed but older commit pushed again (a downgrade) is refused: it does
// not descend from the revision in force. A signed revert, a new commit on
// top, takes the desired state back instead.
func TestSignedDowngradeIsRefusedAndARevertIsNot(t *testing.T) {
	alice := newSSHKey(t)
	f := newFixture(t)
	cfg := gitConfig("file://" + f.bare)
	cfg.Verify = &spec.GitVerify{AllowedSigners: writeFile(t, "allowed_signers", []byte("alice@example.com "+alice.authorized+"\n"))}
	s, err := New(cfg, nil, t.TempDir(), nil)
	require.NoError(t, err)
	start(t, s)
	release := func(version string) string {
		return f.commitWith(nil, sshSigning(alice), "release user "+version, map[string]string{"services/user.yaml": service("user", "B", version, 1)})
	}
	old := release("1.1.0")
	waitFor(t, s, "the first signed release", goodIs(old))
	fixed := release("1.2.0")
	waitFor(t, s, "the second signed release", goodIs(fixed))

	runGit(t, f.work, "push", "-q", "--force", "origin", old+":refs/heads/main")
	st := waitFor(t, s, "the downgrade", func(st Status) bool { return st.Head != nil && st.Head.Hash == old })
	require.Equal(t, fixed, st.Good.Hash, "the revision in force stays")
	require.Equal(t, ReasonNonFastForward, st.Rejected.Reason)
	require.Equal(t, "1.2.0/B", versionOf(t, st.Good, "user"))

	runGit(t, f.work, "push", "-q", "--force", "origin", fixed+":refs/heads/main")
	runGitEnv(t, f.work, nil, append(sshSigning(alice), "revert", "--no-edit", fixed)...)
	f.push()
	st = waitFor(t, s, "the signed revert", goodIs(f.head()))
	require.Equal(t, "1.1.0/B", versionOf(t, st.Good, "user"))
}

// A release and a rollback signed with an OpenSSH key (SSHSIG, namespace
// git, SHA-512) are accepted by the source's own verification and by
// `git verify-commit` with gpg.format=ssh and an allowed signers file.
func TestSSHSignedReleaseAndRollbackAreAcceptedBySourceAndGit(t *testing.T) {
	alice := newSSHKey(t)
	key, err := ReadSigningKey(alice.file, "")
	require.NoError(t, err)
	signersFile := writeFile(t, "allowed_signers", []byte("alice@example.com "+alice.authorized+"\n"))

	f := newFixture(t)
	v, err := newVerifier(&spec.GitVerify{AllowedSigners: signersFile})
	require.NoError(t, err)
	repo, err := gogit.PlainOpen(f.work)
	require.NoError(t, err)
	opts := repoOptions(f)
	opts.SignKey = key
	rel, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
	back, err := Rollback(context.Background(), RollbackOptions{RepoOptions: opts, Service: "user"})
	require.NoError(t, err)
	for _, hash := range []string{rel, back} {
		c, err := repo.CommitObject(plumbing.NewHash(hash))
		require.NoError(t, err)
		signer, err := v.check(c)
		require.NoError(t, err)
		require.Equal(t, "ssh "+alice.fingerprint+" alice@example.com", signer)
		out := runGit(t, f.work, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+signersFile, "verify-commit", "-v", hash)
		require.Contains(t, out, `Good "git" signature for alice@example.com with ED25519 key `+alice.fingerprint)
	}
}

// With the daemon's config (git.verify), Release refuses to commit
// unsigned or with a key the daemon does not trust, and changes nothing.
func TestReleaseUnderAVerifyingConfigRefusesWhatTheDaemonWouldReject(t *testing.T) {
	alice, mallory := newSSHKey(t), newSSHKey(t)
	signers := writeFile(t, "allowed_signers", []byte("alice@example.com "+alice.authorized+"\n"))
	cfg, err := spec.ParseConfig("tandem.yaml", []byte("git:\n  url: /srv/desired\n  verify: {allowedSigners: "+signers+"}\nproviders: {haproxy: [{name: edge, socket: /run/haproxy.sock}]}\npolicy: {hooks: {commands: [./deploy.sh]}}\n"))
	require.NoError(t, err)
	pgp := newPGPKey(t, "Alice Example", "alice@example.com")
	f := newFixture(t)
	head := f.head()
	for _, tc := range []struct {
		name string
		key  *SigningKey
		want string
	}{
		{"unsigned", nil, "tandem.yaml sets git.verify, so the daemon accepts only signed commits; sign this one with --sign-key FILE"},
		{"an SSH key that is not allowed", readKey(t, mallory.file), "the daemon of tandem.yaml would reject a commit signed by --sign-key (ssh " + mallory.fingerprint + "): its public key is not in git.verify.allowedSigners"},
		{"an OpenPGP key without a keyring", PGPSigningKey(pgp.entity), "git.verify.keyring is not set, so OpenPGP signatures are not trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := repoOptions(f)
			opts.Config, opts.SignKey = cfg, tc.key
			hash, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
			require.Empty(t, hash)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, head, f.head(), "nothing was committed")
		})
	}
	opts := repoOptions(f)
	opts.Config, opts.SignKey = cfg, readKey(t, alice.file)
	_, err = Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
}

func readKey(t *testing.T, file string) *SigningKey {
	t.Helper()
	k, err := ReadSigningKey(file, "")
	require.NoError(t, err)
	return k
}

// RSA keys sign with rsa-sha2-512, as ssh-keygen does (OpenSSH refuses
// SHA-1 ssh-rsa signatures), and the signature verifies.
func TestSSHSignerUsesRSASHA512ForRSAKeys(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	armored, err := sshsigSigner{signer}.Sign(strings.NewReader("tree 0000\n\nmessage\n"))
	require.NoError(t, err)
	sig, err := parseSSHSignature(string(armored))
	require.NoError(t, err)
	require.Equal(t, ssh.KeyAlgoRSASHA512, sig.sig.Format)
	require.Equal(t, "sha512", sig.hashAlg)
	require.NoError(t, sig.verify([]byte("tree 0000\n\nmessage\n")))
	require.Error(t, sig.verify([]byte("tree 0000\n\nanother message\n")))
}
