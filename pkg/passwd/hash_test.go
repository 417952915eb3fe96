// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fixedSalt is bytes 00 01 ... 0b, the salt of the reference test vectors.
func fixedSalt() *bytes.Reader { return bytes.NewReader([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) }

// Golden hashes below were computed independently with Python's hashlib
// (sha512 and pbkdf2_hmac) over salt 00..0b, not with this package.
func TestHashGolden(t *testing.T) {
	tests := []struct {
		name     string
		password string
		opts     HashOptions
		want     string
	}{
		{"default is pbkdf2 with 101 iterations", "secret", HashOptions{},
			"$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="},
		{"explicit pbkdf2", "secret", HashOptions{Type: TypeSHA512PBKDF2, Iterations: 101},
			"$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="},
		{"pbkdf2 1000 iterations utf-8", "pässwörd", HashOptions{Iterations: 1000},
			"$7$1000$AAECAwQFBgcICQoL$iRR8uENz7KFceMWL2E8N1y1A2bF3Hh4ISU4B3LW+ZuSMCQpyYie8w9kx5VDWSXKmNRD7G/HWoqriCsdDYb6b9w=="},
		{"pbkdf2 one iteration", "x", HashOptions{Iterations: 1},
			"$7$1$AAECAwQFBgcICQoL$K7+sfzfOUpItfrUnF2SlGSfOdNcfDVo9PIva9L9bhXL1XZGxOIwZnzGXejZHKsXiFb5C3d6v0XMGqUJULRFSmA=="},
		{"sha512", "secret", HashOptions{Type: TypeSHA512},
			"$6$AAECAwQFBgcICQoL$JqsxEv/ucyxjA5DKsQ+Y8CDWaQDNQI9FpAkmfwAqWfwZLk/JEGgM0EpylrJHAZKKyFQjJeZ3nFaHjPzOzPPmPw=="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Rand = fixedSalt()
			got, err := Hash(tt.password, tt.opts)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			ok, err := Verify(tt.password, got)
			require.NoError(t, err)
			require.True(t, ok)
		})
	}
}

func TestHashRandomSalt(t *testing.T) {
	a, err := Hash("same", HashOptions{})
	require.NoError(t, err)
	b, err := Hash("same", HashOptions{})
	require.NoError(t, err)
	require.NotEqual(t, a, b, "two hashes of one password must differ by salt")
	require.True(t, strings.HasPrefix(a, "$7$101$"), a)
	require.Len(t, strings.Split(a, "$")[3], 16, "12-byte salt is 16 base64 chars")
	require.Len(t, strings.Split(a, "$")[4], 88, "64-byte hash is 88 base64 chars")
}

func TestHashErrors(t *testing.T) {
	_, err := Hash("x", HashOptions{Type: "md5"})
	require.EqualError(t, err, "Unknown hash type 'md5'")
	var ut *UnknownHashTypeError
	require.ErrorAs(t, err, &ut)

	_, err = Hash("x", HashOptions{Iterations: -1})
	require.ErrorIs(t, err, ErrIterations)
	require.EqualError(t, err, "Number of iterations must be > 0.")

	_, err = Hash("x", HashOptions{Rand: bytes.NewReader([]byte{1, 2, 3})})
	require.ErrorContains(t, err, "read random salt")
}

// The vectors of reference §7.4, verified there with Python and a real
// mosquitto 2.0.20 broker.
func TestVerifyReferenceVectors(t *testing.T) {
	tests := []struct {
		name, hash, password string
	}{
		{"sha512", "$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==", "test"},
		{"pbkdf2", "$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w==", "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify(tt.password, tt.hash)
			require.NoError(t, err)
			require.True(t, ok)
			for _, wrong := range []string{"", tt.password + "x", strings.ToUpper(tt.password), tt.password[:len(tt.password)-1]} {
				ok, err = Verify(wrong, tt.hash)
				require.NoError(t, err)
				require.False(t, ok, "wrong password %q accepted", wrong)
			}
		})
	}
}

func TestVerifyMalformed(t *testing.T) {
	const salt = "AAECAwQFBgcICQoL"
	const key = "Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="
	tests := []struct {
		name string
		hash string
		want HashProblem
	}{
		{"plain text", "secret", ProblemType},
		{"empty", "", ProblemType},
		{"md5 crypt", "$1$abc$def", ProblemType},
		{"argon2id (2.1)", "$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA", ProblemType},
		{"7 missing hash", "$7$101$" + salt, ProblemFormat},
		{"7 missing salt", "$7$101$", ProblemFormat},
		{"7 only", "$7$", ProblemFormat},
		{"6 missing hash", "$6$" + salt, ProblemFormat},
		{"6 only", "$6", ProblemFormat},
		{"6 with iterations", "$6$101$" + salt + "$" + key, ProblemSalt},
		{"only dollars", "$$$", ProblemType},
		{"zero iterations", "$7$0$" + salt + "$" + key, ProblemIterations},
		{"negative iterations", "$7$-5$" + salt + "$" + key, ProblemIterations},
		{"plus iterations", "$7$+5$" + salt + "$" + key, ProblemIterations},
		{"text iterations", "$7$abc$" + salt + "$" + key, ProblemIterations},
		{"salt not base64", "$7$101$!!!!$" + key, ProblemSalt},
		{"salt 64 bytes (2.1)", "$7$101$" + strings.Repeat("AAAA", 21) + "AA==$" + key, ProblemSalt},
		{"short hash", "$7$101$" + salt + "$AAAA", ProblemDigest},
		{"hash not base64", "$6$" + salt + "$" + strings.Repeat("*", 88), ProblemDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify("secret", tt.hash)
			require.False(t, ok)
			var he *HashError
			require.True(t, errors.As(err, &he), "error %v", err)
			require.Equal(t, tt.want, he.Problem)
			require.Contains(t, err.Error(), "invalid password hash: ")
			require.ErrorAs(t, CheckHash(tt.hash), &he)
		})
	}
}

// The mosquitto broker splits hashes with strtok: empty fields and trailing
// fields are ignored, and so is a missing leading '$' (checked against a
// real mosquitto 2.0.11 broker).
func TestVerifyStrtokForms(t *testing.T) {
	const salt = "AAECAwQFBgcICQoL"
	const key = "Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="
	for _, h := range []string{
		"7$101$" + salt + "$" + key,
		"$7$101$" + salt + "$" + key + "$junk",
		"$7$$101$" + salt + "$$" + key,
	} {
		ok, err := Verify("secret", h)
		require.NoError(t, err, h)
		require.True(t, ok, h)
	}
}

func TestVerifyUnpaddedBase64(t *testing.T) {
	// OpenSSL, which mosquitto uses to decode, does not insist on padding.
	h := "$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w"
	ok, err := Verify("secret", h)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestValidateUsername(t *testing.T) {
	tests := []struct {
		name, user string
		want       error
	}{
		{"plain", "alice", nil},
		{"utf-8", "dave.ü", nil},
		{"inner space", "a b", nil},
		{"max length", strings.Repeat("u", MaxLength-1), nil},
		{"colon", "a:b", ErrUsernameColon},
		{"newline", "a\nb", ErrUsernameControl},
		{"tab", "a\tb", ErrUsernameControl},
		{"nul", "a\x00b", ErrUsernameControl},
		{"del", "a\x7fb", ErrUsernameControl},
		{"too long", strings.Repeat("u", MaxLength), ErrUsernameTooLong},
		{"empty", "", ErrUsernameEmpty},
		{"leading space", " bob", ErrUsernameSpace},
		{"trailing space", "bob ", ErrUsernameSpace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateUsername(tt.user)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
	require.EqualError(t, ErrUsernameColon, "Username must not contain the ':' character.")
	require.EqualError(t, ErrUsernameControl, "Username must not contain control characters.")
	require.EqualError(t, ErrUsernameTooLong, "Username must be less than 65536 characters long.")
}

func TestValidatePassword(t *testing.T) {
	require.NoError(t, ValidatePassword("x"))
	require.NoError(t, ValidatePassword("p@ss:word with spaces"))
	require.NoError(t, ValidatePassword(strings.Repeat("p", MaxLength-1)))
	require.ErrorIs(t, ValidatePassword(""), ErrPasswordEmpty)
	require.EqualError(t, ValidatePassword(""), "Empty password.")
	require.ErrorIs(t, ValidatePassword(strings.Repeat("p", MaxLength)), ErrPasswordTooLong)
	require.EqualError(t, ErrPasswordTooLong, "Password must be less than 65536 characters long.")
}

func BenchmarkVerify(b *testing.B) {
	for _, typ := range []string{TypeSHA512PBKDF2, TypeSHA512} {
		h, err := Hash("secret", HashOptions{Type: typ, Rand: fixedSalt()})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(typ, func(b *testing.B) {
			for b.Loop() {
				if ok, _ := Verify("secret", h); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}
