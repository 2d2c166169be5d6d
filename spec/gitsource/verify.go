package gitsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/tandemhq/tandem/spec"
)

// SignatureError says why the signature of a head commit was not accepted.
type SignatureError struct {
	Commit string // full hash of the commit
	// Key identifies the signing key when there is one: the OpenPGP issuer
	// fingerprint (or key id) or the SSH key's SHA256 fingerprint.
	Key    string
	Reason string
}

func (e *SignatureError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("commit %s: %s", shortHash(e.Commit), e.Reason)
	}
	return fmt.Sprintf("commit %s: %s (key %s)", shortHash(e.Commit), e.Reason, e.Key)
}

const pgpArmorHead = "-----BEGIN PGP SIGNATURE-----"

// verifier is the commit signature policy: a head commit must carry a valid
// signature by a key of the OpenPGP keyring or of the SSH allowed signers.
type verifier struct {
	keyring openpgp.EntityList // nil: OpenPGP signatures are not trusted
	signers []allowedSigner    // nil: SSH signatures are not trusted
}

// newVerifier loads the trusted keys; nil config means no verification.
func newVerifier(v *spec.GitVerify) (*verifier, error) {
	if v == nil {
		return nil, nil
	}
	if v.Keyring == "" && v.AllowedSigners == "" {
		return nil, errors.New("git.verify: must set keyring or allowedSigners")
	}
	out := &verifier{}
	if v.Keyring != "" {
		data, err := os.ReadFile(v.Keyring)
		if err != nil {
			return nil, fmt.Errorf("git.verify.keyring: %w", err)
		}
		out.keyring, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("git.verify.keyring: reading armored OpenPGP public keys from %s: %w", v.Keyring, err)
		}
		if len(out.keyring) == 0 {
			return nil, fmt.Errorf("git.verify.keyring: %s holds no keys", v.Keyring)
		}
	}
	if v.AllowedSigners != "" {
		var err error
		if out.signers, err = readAllowedSigners(v.AllowedSigners); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// check verifies the commit's signature and describes the trusted signer.
// A signature that is not accepted is a *SignatureError.
func (v *verifier) check(c *object.Commit) (string, error) {
	sig := strings.TrimSpace(c.PGPSignature)
	if sig == "" {
		return "", rejectSignature(c, "", "unsigned; a signature by a trusted key is required")
	}
	message, err := signedPayload(c)
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(sig, pgpArmorHead):
		return v.checkPGP(c, sig, message)
	case strings.HasPrefix(sig, sshsigArmorHead):
		return v.checkSSH(c, sig, message)
	}
	return "", rejectSignature(c, "", "signature type is not supported (OpenPGP and SSH are)")
}

func rejectSignature(c *object.Commit, key, format string, args ...any) error {
	return &SignatureError{Commit: c.Hash.String(), Key: key, Reason: fmt.Sprintf(format, args...)}
}

func (v *verifier) checkPGP(c *object.Commit, sig string, message []byte) (string, error) {
	if v.keyring == nil {
		return "", rejectSignature(c, "", "signed with OpenPGP, but git.verify.keyring is not configured")
	}
	if strings.Count(sig, pgpArmorHead) > 1 {
		return "", rejectSignature(c, "", "carries more than one signature")
	}
	block, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return "", rejectSignature(c, "", "unreadable OpenPGP signature: %v", err)
	}
	body, err := io.ReadAll(block.Body)
	if err != nil {
		return "", rejectSignature(c, "", "unreadable OpenPGP signature: %v", err)
	}
	key := pgpIssuer(body)
	signer, err := openpgp.CheckDetachedSignature(v.keyring, bytes.NewReader(message), bytes.NewReader(body), nil)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return "", rejectSignature(c, key, "signed by a key that is not in git.verify.keyring")
	case err != nil:
		return "", rejectSignature(c, key, "OpenPGP signature does not verify: %v", err)
	}
	if id := signer.PrimaryIdentity(); id != nil {
		return "openpgp " + key + " " + id.Name, nil
	}
	return "openpgp " + key, nil
}

// checkSSH accepts a signature by a key of the allowed signers that is
// valid for git's namespace at the commit time (as git passes the
// committer date to ssh-keygen -Y verify).
func (v *verifier) checkSSH(c *object.Commit, sig string, message []byte) (string, error) {
	if v.signers == nil {
		return "", rejectSignature(c, "", "signed with SSH, but git.verify.allowedSigners is not configured")
	}
	s, err := parseSSHSignature(sig)
	if err != nil {
		return "", rejectSignature(c, "", "unreadable SSH signature: %v", err)
	}
	key := ssh.FingerprintSHA256(s.key)
	listed := false
	for _, a := range v.signers {
		if !bytes.Equal(a.key.Marshal(), s.key.Marshal()) {
			continue
		}
		listed = true
		if !a.allows(c.Committer.When) {
			continue
		}
		if err := s.verify(message); err != nil {
			return "", rejectSignature(c, key, "SSH signature does not verify: %v", err)
		}
		return "ssh " + key + " " + a.principals, nil
	}
	if listed {
		return "", rejectSignature(c, key, "signing key is in git.verify.allowedSigners, but not for namespace %q at the commit time %s",
			sshsigNamespace, c.Committer.When.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return "", rejectSignature(c, key, "signed by a key that is not in git.verify.allowedSigners")
}

// signedPayload is what git signs: the commit object without its signature.
func signedPayload(c *object.Commit) ([]byte, error) {
	var o plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&o); err != nil {
		return nil, fmt.Errorf("encoding commit %s: %w", c.Hash, err)
	}
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("encoding commit %s: %w", c.Hash, err)
	}
	defer r.Close()
	return io.ReadAll(r)
}

// pgpIssuer names the key that made an OpenPGP signature, for messages.
func pgpIssuer(body []byte) string {
	p, err := packet.Read(bytes.NewReader(body))
	if err != nil {
		return "unknown"
	}
	sig, ok := p.(*packet.Signature)
	switch {
	case !ok:
		return "unknown"
	case len(sig.IssuerFingerprint) > 0:
		return fmt.Sprintf("%X", sig.IssuerFingerprint)
	case sig.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *sig.IssuerKeyId)
	}
	return "unknown"
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
