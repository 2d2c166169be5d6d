package gitsource

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSH commit signatures, as written by `git commit -S` with gpg.format=ssh
// (ssh-keygen -Y sign -n git). The format is OpenSSH's PROTOCOL.sshsig
// (openssh-portable, file PROTOCOL.sshsig): an armored blob
//
//	byte[6] "SSHSIG"; uint32 version (1); string publickey; string namespace;
//	string reserved; string hash_algorithm; string signature
//
// where signature is an SSH signature (string format, string blob) over
//
//	byte[6] "SSHSIG"; string namespace; string reserved;
//	string hash_algorithm; string H(message)
//
// Trust follows ssh-keygen's ALLOWED SIGNERS format (ssh-keygen(1)):
// "principals [options] keytype base64-key [comment]", with the options
// namespaces="..." , valid-after=, valid-before= and cert-authority.
// Certificates (cert-authority) are not supported and are refused when the
// file is loaded.

const (
	sshsigMagic     = "SSHSIG"
	sshsigArmorHead = "-----BEGIN SSH SIGNATURE-----"
	sshsigArmorTail = "-----END SSH SIGNATURE-----"
	sshsigNamespace = "git" // what git passes to ssh-keygen -Y sign -n
)

// allowedSigner is one line of an allowed_signers file.
type allowedSigner struct {
	principals string
	key        ssh.PublicKey
	namespaces []string // empty: any
	after      time.Time
	before     time.Time
}

// readAllowedSigners parses an allowed_signers file, refusing anything it
// does not understand with the line it is on.
func readAllowedSigners(file string) ([]allowedSigner, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("git.verify.allowedSigners: %w", err)
	}
	var out []allowedSigner
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseAllowedSigner(line)
		if err != nil {
			return nil, fmt.Errorf("git.verify.allowedSigners: %s:%d: %w", file, n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("git.verify.allowedSigners: reading %s: %w", file, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("git.verify.allowedSigners: %s lists no keys", file)
	}
	return out, nil
}

func parseAllowedSigner(line string) (allowedSigner, error) {
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return allowedSigner{}, errors.New("expected principals, then a public key")
	}
	principals, rest := strings.Trim(line[:i], `"`), line[i+1:]
	// After the principals the line has the layout of an authorized_keys
	// line: [options] keytype base64-key [comment].
	key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(rest)))
	if err != nil {
		return allowedSigner{}, fmt.Errorf("public key: %w", err)
	}
	s := allowedSigner{principals: principals, key: key}
	for _, o := range options {
		name, value, _ := strings.Cut(o, "=")
		value = strings.Trim(value, `"`)
		switch strings.ToLower(name) {
		case "namespaces":
			s.namespaces = strings.Split(value, ",")
		case "valid-after":
			s.after, err = parseSignerTime(value)
		case "valid-before":
			s.before, err = parseSignerTime(value)
		case "cert-authority":
			return allowedSigner{}, errors.New("cert-authority is not supported; list the signing keys themselves")
		default:
			return allowedSigner{}, fmt.Errorf("unknown option %q", name)
		}
		if err != nil {
			return allowedSigner{}, fmt.Errorf("option %s: %w", name, err)
		}
	}
	return s, nil
}

// parseSignerTime reads YYYYMMDD[HHMM[SS]][Z]: local time unless Z.
func parseSignerTime(v string) (time.Time, error) {
	loc := time.Local
	if s, ok := strings.CutSuffix(v, "Z"); ok {
		v, loc = s, time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(v)]
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", v)
	}
	return time.ParseInLocation(layout, v, loc)
}

func (s allowedSigner) allows(at time.Time) bool {
	if len(s.namespaces) > 0 && !slices.Contains(s.namespaces, sshsigNamespace) {
		return false
	}
	return (s.after.IsZero() || !at.Before(s.after)) && (s.before.IsZero() || at.Before(s.before))
}

// sshSignature is a decoded SSHSIG blob.
type sshSignature struct {
	key       ssh.PublicKey
	namespace string
	reserved  string
	hashAlg   string
	sig       ssh.Signature
}

func parseSSHSignature(armored string) (*sshSignature, error) {
	body := strings.TrimSpace(armored)
	body, ok := strings.CutPrefix(body, sshsigArmorHead)
	if !ok {
		return nil, errors.New("not an SSH signature")
	}
	body, ok = strings.CutSuffix(body, sshsigArmorTail)
	if !ok {
		return nil, errors.New("SSH signature armor is not terminated")
	}
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, fmt.Errorf("decoding SSH signature: %w", err)
	}
	rest, ok := bytes.CutPrefix(blob, []byte(sshsigMagic))
	if !ok {
		return nil, errors.New("SSH signature lacks the SSHSIG preamble")
	}
	var wire struct {
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}
	if err := ssh.Unmarshal(rest, &wire); err != nil {
		return nil, fmt.Errorf("decoding SSH signature: %w", err)
	}
	if wire.Version != 1 {
		return nil, fmt.Errorf("SSH signature version %d is not supported", wire.Version)
	}
	key, err := ssh.ParsePublicKey(wire.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("SSH signature public key: %w", err)
	}
	if _, isCert := key.(*ssh.Certificate); isCert {
		return nil, errors.New("SSH certificate signatures are not supported")
	}
	out := &sshSignature{key: key, namespace: wire.Namespace, reserved: wire.Reserved, hashAlg: wire.HashAlg}
	if err := ssh.Unmarshal(wire.Signature, &out.sig); err != nil {
		return nil, fmt.Errorf("decoding SSH signature: %w", err)
	}
	return out, nil
}

// verify checks the signature over message, with git's namespace.
func (s *sshSignature) verify(message []byte) error {
	if s.namespace != sshsigNamespace {
		return fmt.Errorf("signature namespace is %q, not %q", s.namespace, sshsigNamespace)
	}
	var h hash.Hash
	switch s.hashAlg {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return fmt.Errorf("hash algorithm %q is not supported", s.hashAlg)
	}
	h.Write(message)
	signed := append([]byte(sshsigMagic), ssh.Marshal(struct {
		Namespace, Reserved, HashAlg string
		Hash                         []byte
	}{s.namespace, s.reserved, s.hashAlg, h.Sum(nil)})...)
	return s.key.Verify(signed, &s.sig)
}
