// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Hash types, as given to mosquitto_passwd -H.
const (
	// TypeSHA512PBKDF2 writes $7$ hashes (PBKDF2-HMAC-SHA512), the default
	// of mosquitto 2.0.
	TypeSHA512PBKDF2 = "sha512-pbkdf2"
	// TypeSHA512 writes $6$ hashes (one round of SHA-512), the format of
	// mosquitto 1.6.
	TypeSHA512 = "sha512"
)

const (
	// DefaultIterations is the PBKDF2 iteration count of mosquitto 2.0.
	DefaultIterations = 101
	// MaxLength is the first username or password length (in bytes) that
	// mosquitto_passwd refuses.
	MaxLength = 65536

	saltLen = 12 // bytes; the 2.0 broker accepts no other length
	keyLen  = 64 // bytes; SHA-512 output
)

// HashOptions selects how [Hash] hashes a password. The zero value gives
// mosquitto 2.0's default: $7$ with 101 iterations and a random salt.
type HashOptions struct {
	Type       string    // TypeSHA512PBKDF2 (default when empty) or TypeSHA512
	Iterations int       // PBKDF2 iterations; 0 means DefaultIterations; ignored for TypeSHA512
	Rand       io.Reader // salt source; nil means crypto/rand (set for reproducible tests)
}

// Hash hashes password into the password field of a mosquitto password file,
// e.g. "$7$101$SALT$HASH". It does not validate the password; see
// [ValidatePassword].
func Hash(password string, opts HashOptions) (string, error) {
	typ := opts.Type
	if typ == "" {
		typ = TypeSHA512PBKDF2
	}
	if typ != TypeSHA512PBKDF2 && typ != TypeSHA512 {
		return "", &UnknownHashTypeError{Type: typ}
	}
	iter := opts.Iterations
	if iter == 0 {
		iter = DefaultIterations
	}
	if iter < 0 {
		return "", ErrIterations
	}
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", fmt.Errorf("read random salt: %w", err)
	}
	h := parsedHash{salt: salt}
	if typ == TypeSHA512 {
		h.kind = '6'
	} else {
		h.kind, h.iter = '7', iter
	}
	key, err := h.derive(password)
	if err != nil {
		return "", err
	}
	h.key = key
	return h.String(), nil
}

// Verify reports whether password matches hash, a $6$ or $7$ password field.
// The comparison takes constant time. A hash that cannot be decoded gives a
// [*HashError].
func Verify(password, hash string) (bool, error) {
	h, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	return h.verify(password), nil
}

// CheckHash reports whether hash is a well-formed $6$ or $7$ password field
// that the mosquitto 2.0 broker accepts. It returns a [*HashError] if not.
func CheckHash(hash string) error {
	_, err := parseHash(hash)
	return err
}

// parsedHash is a decoded password field.
type parsedHash struct {
	kind byte   // '6' or '7'
	iter int    // PBKDF2 iterations ($7$ only)
	salt []byte // 12 bytes
	key  []byte // 64 bytes
}

// parseHash decodes "$6$SALT$HASH" or "$7$ITER$SALT$HASH". Like the
// mosquitto broker, which splits with strtok, it ignores empty fields and
// anything after the hash, so "7$101$SALT$HASH$x" is read too.
func parseHash(s string) (parsedHash, error) {
	var h parsedHash
	var f []string
	for t := range strings.SplitSeq(s, "$") {
		if t != "" {
			f = append(f, t)
		}
	}
	if len(f) == 0 || (f[0] != "6" && f[0] != "7") {
		return h, &HashError{Problem: ProblemType}
	}
	h.kind = f[0][0]
	rest := f[1:]
	if h.kind == '7' {
		if len(rest) == 0 {
			return h, &HashError{Problem: ProblemFormat}
		}
		n, err := strconv.Atoi(rest[0])
		if err != nil || n < 1 || rest[0][0] == '+' {
			return h, &HashError{Problem: ProblemIterations}
		}
		h.iter = n
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return h, &HashError{Problem: ProblemFormat}
	}
	var ok bool
	if h.salt, ok = decodeB64(rest[0], saltLen); !ok {
		return h, &HashError{Problem: ProblemSalt}
	}
	if len(rest) == 1 {
		return h, &HashError{Problem: ProblemFormat}
	}
	if h.key, ok = decodeB64(rest[1], keyLen); !ok {
		return h, &HashError{Problem: ProblemDigest}
	}
	return h, nil
}

// decodeB64 decodes standard base64, padded or not, and checks the length.
func decodeB64(s string, n int) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	return b, err == nil && len(b) == n
}

// derive computes the key for password with h's algorithm, salt and iterations.
func (h parsedHash) derive(password string) ([]byte, error) {
	if h.kind == '6' {
		s := sha512.New()
		s.Write([]byte(password))
		s.Write(h.salt)
		return s.Sum(nil), nil
	}
	key, err := pbkdf2.Key(sha512.New, password, h.salt, h.iter, keyLen)
	if err != nil {
		return nil, fmt.Errorf("pbkdf2: %w", err)
	}
	return key, nil
}

// verify compares in constant time.
func (h parsedHash) verify(password string) bool {
	got, err := h.derive(password)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// String encodes h as a password field.
func (h parsedHash) String() string {
	salt := base64.StdEncoding.EncodeToString(h.salt)
	key := base64.StdEncoding.EncodeToString(h.key)
	if h.kind == '6' {
		return "$6$" + salt + "$" + key
	}
	return "$7$" + strconv.Itoa(h.iter) + "$" + salt + "$" + key
}

// problem extracts the HashProblem from an error of parseHash.
func problem(err error) HashProblem {
	var he *HashError
	if errors.As(err, &he) {
		return he.Problem
	}
	return ProblemFormat
}

// ValidateUsername checks a username as mosquitto_passwd does: no ':', no
// control characters, shorter than 65536 bytes; and, beyond mosquitto, not
// empty and without leading or trailing spaces (readers trim them, so such a
// name could never be found again).
func ValidateUsername(user string) error {
	if user == "" {
		return ErrUsernameEmpty
	}
	if len(user) >= MaxLength {
		return ErrUsernameTooLong
	}
	if strings.ContainsRune(user, ':') {
		return ErrUsernameColon
	}
	if user[0] == ' ' || user[len(user)-1] == ' ' {
		// Readers trim the name, so it would never match again.
		return ErrUsernameSpace
	}
	for i := 0; i < len(user); i++ {
		if c := user[i]; c < 0x20 || c == 0x7f {
			return ErrUsernameControl
		}
	}
	return nil
}

// ValidatePassword checks a password as mosquitto_passwd does: not empty and
// shorter than 65536 bytes.
func ValidatePassword(password string) error {
	if password == "" {
		return ErrPasswordEmpty
	}
	if len(password) >= MaxLength {
		return ErrPasswordTooLong
	}
	return nil
}
