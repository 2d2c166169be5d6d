package gitsource

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"golang.org/x/crypto/ssh"

	"github.com/tandemhq/tandem/spec"
)

// SigningKey signs the commits of Release and Rollback, so that a daemon
// with git.verify accepts them: an OpenPGP secret key (trusted through
// git.verify.keyring) or an OpenSSH private key (trusted through
// git.verify.allowedSigners). Read one with ReadSigningKey.
type SigningKey struct {
	pgp *openpgp.Entity
	ssh ssh.Signer
}

// PGPSigningKey wraps an OpenPGP entity with its private key.
func PGPSigningKey(e *openpgp.Entity) *SigningKey { return &SigningKey{pgp: e} }

// String names the key as verification names it.
func (k *SigningKey) String() string {
	if k.ssh != nil {
		return "ssh " + ssh.FingerprintSHA256(k.ssh.PublicKey())
	}
	return fmt.Sprintf("openpgp %X", k.pgp.PrimaryKey.Fingerprint)
}

// commitOptions sets the signing fields of go-git's commit options.
func (k *SigningKey) commitOptions(o *git.CommitOptions) {
	switch {
	case k == nil:
	case k.ssh != nil:
		o.Signer = sshsigSigner{k.ssh}
	default:
		o.SignKey = k.pgp
	}
}

// trustedBy says why verification with v would reject this key's
// signatures, or nil when it accepts them (at the time of signing: the
// valid-after/valid-before options of allowed signers are checked now).
func (k *SigningKey) trustedBy(v *verifier) error {
	if k.ssh != nil {
		if v.signers == nil {
			return errors.New("git.verify.allowedSigners is not set, so SSH signatures are not trusted")
		}
		for _, s := range v.signers {
			if bytes.Equal(s.key.Marshal(), k.ssh.PublicKey().Marshal()) {
				return nil
			}
		}
		return errors.New("its public key is not in git.verify.allowedSigners")
	}
	if v.keyring == nil {
		return errors.New("git.verify.keyring is not set, so OpenPGP signatures are not trusted")
	}
	if len(v.keyring.KeysById(k.pgp.PrimaryKey.KeyId)) == 0 {
		return errors.New("its public key is not in git.verify.keyring")
	}
	return nil
}

// ReadSigningKey reads the key that signs release commits from file: an
// OpenSSH private key ("-----BEGIN OPENSSH PRIVATE KEY-----", as
// ssh-keygen writes it; git's gpg.format=ssh), or an OpenPGP secret key
// (armored or binary; the first key with its secret part). passphrase
// decrypts a protected key.
func ReadSigningKey(file string, passphrase spec.Secret) (*SigningKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if bytes.Contains(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		return readSSHSigningKey(file, data, passphrase)
	}
	e, err := readPGPSigningKey(file, data, passphrase)
	if err != nil {
		return nil, err
	}
	return &SigningKey{pgp: e}, nil
}

func readSSHSigningKey(file string, data []byte, passphrase spec.Secret) (*SigningKey, error) {
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase.Empty() {
			return nil, fmt.Errorf("signing key %s is protected by a passphrase; give it with --sign-passphrase-env", file)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(data, []byte(passphrase.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("signing key %s: the passphrase does not decrypt it", file)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: not an OpenSSH private key: %w", file, err)
	}
	return &SigningKey{ssh: signer}, nil
}

// sshsigSigner makes git's SSH commit signatures: an SSHSIG (see
// sshsig.go for the format) with namespace "git" over the commit without
// its signature, hashed with SHA-512, armored as ssh-keygen -Y sign does
// (base64 in lines of 70 characters).
type sshsigSigner struct{ signer ssh.Signer }

func (s sshsigSigner) Sign(message io.Reader) ([]byte, error) {
	h := sha512.New()
	if _, err := io.Copy(h, message); err != nil {
		return nil, err
	}
	signed := append([]byte(sshsigMagic), ssh.Marshal(struct {
		Namespace, Reserved, HashAlg string
		Hash                         []byte
	}{sshsigNamespace, "", "sha512", h.Sum(nil)})...)
	var sig *ssh.Signature
	var err error
	if as, ok := s.signer.(ssh.AlgorithmSigner); ok && s.signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		// ssh-keygen signs with rsa-sha2-512; ssh-rsa (SHA-1) is refused by
		// current OpenSSH verifiers.
		sig, err = as.SignWithAlgorithm(rand.Reader, signed, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = s.signer.Sign(rand.Reader, signed)
	}
	if err != nil {
		return nil, fmt.Errorf("SSH signing: %w", err)
	}
	blob := append([]byte(sshsigMagic), ssh.Marshal(struct {
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}{1, s.signer.PublicKey().Marshal(), sshsigNamespace, "", "sha512", ssh.Marshal(sig)})...)
	b64 := base64.StdEncoding.EncodeToString(blob)
	var out strings.Builder
	out.WriteString(sshsigArmorHead + "\n")
	for len(b64) > 70 {
		out.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	out.WriteString(b64 + "\n" + sshsigArmorTail + "\n")
	return []byte(out.String()), nil
}
