// Package seal encrypts widgetq's secrets at rest: access and refresh
// tokens in the account store, and widget settings (which hold `pass`
// values and `users_lp` passwords) in task payloads.
//
// A sealed value is one printable token:
//
//	wqs1.<key id>.<base64url(nonce ‖ AES-256-GCM ciphertext)>
//
// The key id (8 hex digits of SHA-256 of the key) says which key sealed
// it, so a value sealed with the previous key still opens during a
// rotation, and a re-seal finds exactly the values that need it. A value
// without the prefix is plaintext written before a key was configured:
// it opens as itself, and a re-seal seals it.
//
// The length of a sealed value depends only on the plaintext's length,
// never on the key, so re-sealing a value inside a larger encoded record
// (an asynq task message) keeps every length prefix around it valid.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Prefix starts every sealed value.
const Prefix = "wqs1."

// KeySize is the size of a key in bytes (AES-256).
const KeySize = 32

// aad binds every sealed value to widgetq's format version.
var aad = []byte("widgetq/seal/v1")

// ErrNoKey is returned when a sealed value is read without any key.
var ErrNoKey = errors.New("the value is sealed and no WIDGETQ_SECRET_KEY is configured")

// ErrUnknownKey is returned when no configured key sealed the value.
var ErrUnknownKey = errors.New("the value was sealed with a key that is neither WIDGETQ_SECRET_KEY nor WIDGETQ_SECRET_KEY_PREVIOUS")

// ErrCorrupt is returned for a sealed value that does not decrypt.
var ErrCorrupt = errors.New("the sealed value is damaged or was altered")

type key struct {
	id   string
	aead cipher.AEAD
}

// Keys seals with its current key and opens with the current or any
// previous key. A nil *Keys seals nothing and opens only plaintext.
type Keys struct {
	cur  *key
	prev []*key
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or not)
// of exactly 32 bytes. Errors never repeat the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("want %d bytes encoded in base64, got %d bytes (make one with: openssl rand -base64 32)", KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("not base64 (make one with: openssl rand -base64 32)")
}

// New returns Keys that seal with current and also open with previous.
func New(current []byte, previous ...[]byte) (*Keys, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, err
	}
	k := &Keys{cur: cur}
	for _, p := range previous {
		pk, err := newKey(p)
		if err != nil {
			return nil, err
		}
		if pk.id != cur.id {
			k.prev = append(k.prev, pk)
		}
	}
	return k, nil
}

// FromEnv builds Keys from the two settings' values: nil, nil when
// current is empty. previous without current is an error, as is a key
// that does not parse; errors name the setting, never the key.
func FromEnv(current, previous string) (*Keys, error) {
	if strings.TrimSpace(current) == "" {
		if strings.TrimSpace(previous) != "" {
			return nil, errors.New("WIDGETQ_SECRET_KEY_PREVIOUS is set without WIDGETQ_SECRET_KEY")
		}
		return nil, nil
	}
	c, err := ParseKey(current)
	if err != nil {
		return nil, fmt.Errorf("WIDGETQ_SECRET_KEY: %w", err)
	}
	var prev [][]byte
	if strings.TrimSpace(previous) != "" {
		p, err := ParseKey(previous)
		if err != nil {
			return nil, fmt.Errorf("WIDGETQ_SECRET_KEY_PREVIOUS: %w", err)
		}
		prev = append(prev, p)
	}
	return New(c, prev...)
}

func newKey(b []byte) (*key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("seal: a key is %d bytes, got %d", KeySize, len(b))
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return &key{id: hex.EncodeToString(sum[:4]), aead: g}, nil
}

// Enabled reports whether values are sealed.
func (k *Keys) Enabled() bool { return k != nil && k.cur != nil }

// KeyID is the current key's id ("" without a key).
func (k *Keys) KeyID() string {
	if !k.Enabled() {
		return ""
	}
	return k.cur.id
}

// Seal returns plain sealed with the current key; without a key, plain.
// The empty string stays empty (there is nothing to hide, and "no
// refresh token" must stay recognisable).
func (k *Keys) Seal(plain string) string {
	if !k.Enabled() || plain == "" {
		return plain
	}
	nonce := make([]byte, k.cur.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("seal: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	out := k.cur.aead.Seal(nonce, nonce, []byte(plain), aad)
	return Prefix + k.cur.id + "." + base64.RawURLEncoding.EncodeToString(out)
}

// IsSealed reports whether s has the sealed form.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// KeyIDOf returns the id of the key that sealed s ("" when s is not
// sealed).
func KeyIDOf(s string) string {
	if !IsSealed(s) {
		return ""
	}
	rest := s[len(Prefix):]
	i := strings.IndexByte(rest, '.')
	if i < 0 {
		return ""
	}
	return rest[:i]
}

// Open returns the plaintext of a sealed value, or s itself when it is
// not sealed. Errors never include s.
func (k *Keys) Open(s string) (string, error) {
	if !IsSealed(s) {
		return s, nil
	}
	if k == nil || k.cur == nil {
		return "", ErrNoKey
	}
	rest := s[len(Prefix):]
	i := strings.IndexByte(rest, '.')
	if i < 0 {
		return "", ErrCorrupt
	}
	id, body := rest[:i], rest[i+1:]
	var kk *key
	for _, c := range append([]*key{k.cur}, k.prev...) {
		if c.id == id {
			kk = c
			break
		}
	}
	if kk == nil {
		return "", ErrUnknownKey
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	ns := kk.aead.NonceSize()
	if err != nil || len(raw) < ns+kk.aead.Overhead() {
		return "", ErrCorrupt
	}
	plain, err := kk.aead.Open(nil, raw[:ns], raw[ns:], aad)
	if err != nil {
		return "", ErrCorrupt
	}
	return string(plain), nil
}

// NeedsReseal reports whether s is plaintext (non-empty) or sealed with a
// key other than the current one.
func (k *Keys) NeedsReseal(s string) bool {
	if !k.Enabled() || s == "" {
		return false
	}
	return KeyIDOf(s) != k.cur.id
}

// Reseal opens s with any configured key and seals it with the current
// one; changed is false when s already uses the current key.
func (k *Keys) Reseal(s string) (out string, changed bool, err error) {
	if !k.NeedsReseal(s) {
		return s, false, nil
	}
	plain, err := k.Open(s)
	if err != nil {
		return s, false, err
	}
	return k.Seal(plain), true, nil
}

// sealedRE matches a sealed value inside a larger text.
var sealedRE = regexp.MustCompile(`wqs1\.[0-9a-f]{8}\.[A-Za-z0-9_-]+`)

// ResealAll re-seals, in place, every sealed value found inside b that
// uses a key other than the current one. Each value keeps its length, so
// an encoded record around it stays valid. It returns the new bytes and
// how many values changed.
func (k *Keys) ResealAll(b []byte) ([]byte, int, error) {
	if !k.Enabled() {
		return b, 0, nil
	}
	var firstErr error
	n := 0
	out := sealedRE.ReplaceAllFunc(b, func(m []byte) []byte {
		s := string(m)
		r, changed, err := k.Reseal(s)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return m
		}
		if changed {
			if len(r) != len(s) {
				panic("seal: re-sealed value changed length")
			}
			n++
		}
		return []byte(r)
	})
	if firstErr != nil {
		return b, 0, firstErr
	}
	return out, n, nil
}
