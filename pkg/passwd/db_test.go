// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

func TestReadDB(t *testing.T) {
	const salt = "AAECAwQFBgcICQoL"
	const key = "Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="
	in := strings.Join([]string{
		"# alice is the admin",          // 1 comment: skipped
		"",                              // 2 blank: skipped
		"no colon here",                 // 3 skipped silently
		" alice :" + hashA + " ",        // 4 trimmed
		"bob:" + hashB + ":ignored",     // 5 third field ignored
		"plain:secret",                  // 6 plain text: removed
		"nofield:",                      // 7 no password token
		"short:$7$101$" + salt,          // 8 wrong field count
		"iter:$7$0$" + salt + "$" + key, // 9 bad iterations
		"salt:$7$101$AAAA$" + key,       // 10 bad salt
		"digest:$6$" + salt + "$AAAA",   // 11 bad digest
		"  # spaced comment: oops",      // 12 bogus user, bad hash type
		"x::" + hashA,                   // 13 strtok: field is token after ::
		"\tcarol\t:\t" + hashA,          // 14
	}, "\n")
	db, warns, err := ReadDB(strings.NewReader(in), "pw")
	require.NoError(t, err)
	require.Equal(t, []string{"alice", "bob", "carol", "x"}, db.Users())
	require.Equal(t, 4, db.Len())

	var msgs []string
	var lines []int
	for _, w := range warns {
		msgs = append(msgs, w.String())
		lines = append(lines, w.Line)
	}
	require.Equal(t, []string{
		"Error: Invalid password hash type for user plain, removing entry.",
		"Warning: Invalid line in password file 'pw': nofield",
		"Error: Invalid password hash for user short, removing entry.",
		"Error: Invalid hash iterations for user iter, removing entry.",
		"Error: Unable to decode password salt for user salt, removing entry.",
		"Error: Unable to decode password for user digest, removing entry.",
		"Error: Invalid password hash type for user # spaced comment, removing entry.",
	}, msgs)
	require.Equal(t, []int{6, 7, 8, 9, 10, 11, 12}, lines)
	require.Equal(t, "plain", warns[0].User)

	h, ok := db.Lookup("alice")
	require.True(t, ok)
	require.Equal(t, hashA, h)
	_, ok = db.Lookup("plain")
	require.False(t, ok)

	require.True(t, db.Authenticate("alice", "secret"))
	require.True(t, db.Authenticate("carol", "secret"))
	require.True(t, db.Authenticate("x", "secret"))
	require.True(t, db.Authenticate("bob", "test"))
	require.False(t, db.Authenticate("alice", "test"))
	require.False(t, db.Authenticate("alice", ""))
	require.False(t, db.Authenticate("bob", "secret"))
	require.False(t, db.Authenticate("plain", "secret"), "plain-text entries never authenticate")
	require.False(t, db.Authenticate("nobody", "secret"))
	require.False(t, db.Authenticate("", ""))
}

func TestReadDBDuplicateLastWins(t *testing.T) {
	db, warns, err := ReadDB(strings.NewReader("a:"+hashA+"\nb:"+hashA+"\na:"+hashB+"\n"), "pw")
	require.NoError(t, err)
	require.True(t, db.Authenticate("a", "test"))
	require.False(t, db.Authenticate("a", "secret"))
	require.Len(t, warns, 1)
	require.Equal(t, "Warning: Duplicate user a in password file 'pw' (lines 1 and 3), using line 3.", warns[0].Msg)

	// A broken later entry removes the user rather than falling back.
	db, warns, err = ReadDB(strings.NewReader("a:"+hashA+"\na:secret\n"), "pw")
	require.NoError(t, err)
	require.False(t, db.Authenticate("a", "secret"))
	require.Len(t, warns, 2)
	require.Equal(t, 0, db.Len())
}

func TestReadDBLongUsername(t *testing.T) {
	long := strings.Repeat("u", MaxLength)
	db, warns, err := ReadDB(strings.NewReader(long+":"+hashA+"\n"), "pw")
	require.NoError(t, err)
	require.Equal(t, 0, db.Len())
	require.Len(t, warns, 1)
	require.Equal(t, "Warning: Invalid line in password file 'pw', username too long.", warns[0].Msg)
}

func TestReadDBReadError(t *testing.T) {
	_, _, err := ReadDB(iotest.ErrReader(errors.New("disk on fire")), "pw")
	require.EqualError(t, err, "read password file pw: disk on fire")
}

func TestLoadDB(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(p, []byte("alice:"+hashA+"\n"), 0o600))
	db, warns, err := LoadDB(p)
	require.NoError(t, err)
	require.Empty(t, warns)
	require.True(t, db.Authenticate("alice", "secret"))

	_, _, err = LoadDB(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// testdata/mosquitto_passwd.txt was written once by the real mosquitto_passwd
// 2.0.11:
//
//	mosquitto_passwd -c -b mosquitto_passwd.txt alice secret
//	mosquitto_passwd -b -H sha512 mosquitto_passwd.txt bob hunter2
//	mosquitto_passwd -b -I 1000 mosquitto_passwd.txt carol 'p@ss:word with spaces'
//	mosquitto_passwd -b mosquitto_passwd.txt dave.ü ünïcødé
var mosquittoUsers = map[string]string{
	"alice":  "secret",
	"bob":    "hunter2",
	"carol":  "p@ss:word with spaces",
	"dave.ü": "ünïcødé",
}

func TestMosquittoPasswdFile(t *testing.T) {
	raw, err := os.ReadFile("testdata/mosquitto_passwd.txt")
	require.NoError(t, err)

	t.Run("strict parser", func(t *testing.T) {
		f, err := Parse(strings.NewReader(string(raw)))
		require.NoError(t, err)
		require.Len(t, f.Entries, len(mosquittoUsers))
		require.Equal(t, string(raw), string(f.Bytes()), "round trip must be byte-exact")
		for _, e := range f.Entries {
			pw, known := mosquittoUsers[e.User]
			require.True(t, known, e.User)
			ok, err := Verify(pw, e.Hash)
			require.NoError(t, err)
			require.True(t, ok, "user %s", e.User)
			ok, err = Verify(pw+"!", e.Hash)
			require.NoError(t, err)
			require.False(t, ok, "user %s", e.User)
		}
		// Formats written by mosquitto 2.0: default $7$ 101, -H sha512, -I 1000.
		a, _ := f.Lookup("alice")
		require.True(t, strings.HasPrefix(a.Hash, "$7$101$"))
		b, _ := f.Lookup("bob")
		require.True(t, strings.HasPrefix(b.Hash, "$6$"))
		c, _ := f.Lookup("carol")
		require.True(t, strings.HasPrefix(c.Hash, "$7$1000$"))
	})

	t.Run("broker reader", func(t *testing.T) {
		db, warns, err := LoadDB("testdata/mosquitto_passwd.txt")
		require.NoError(t, err)
		require.Empty(t, warns)
		require.Equal(t, len(mosquittoUsers), db.Len())
		for u, pw := range mosquittoUsers {
			require.True(t, db.Authenticate(u, pw), u)
			require.False(t, db.Authenticate(u, pw[1:]), u)
		}
	})
}
