// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Warning is a problem found while loading a password file for the broker.
// The entry concerned is skipped or dropped; loading goes on.
type Warning struct {
	Line int    // 1-based line number
	User string // username concerned, "" if unknown
	Msg  string // mosquitto's log line, e.g. "Error: Invalid password hash type for user bob, removing entry."
}

// String returns Msg.
func (w Warning) String() string { return w.Msg }

// DB is a password table as the broker sees it: usernames mapped to decoded
// hashes. It is read-only after loading and safe for concurrent use.
type DB struct {
	users map[string]dbEntry
}

type dbEntry struct {
	field string
	hash  parsedHash
}

// LoadDB opens and reads a password file for the broker; see [ReadDB]. The
// error is only for a file that cannot be opened or read.
func LoadDB(path string) (*DB, []Warning, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return ReadDB(f, path)
}

// ReadDB reads a password file leniently, like the mosquitto broker; name
// is the file name used in warnings.
//
//   - A line starting with '#' and a line without ':' (blank lines too) are
//     skipped silently.
//   - The username is the text before the first ':', the password field the
//     token between the first and second ':', both trimmed (strtok
//     semantics: "a::b" gives user "a", field "b").
//   - A line without a field, or whose username is 65536 bytes or longer,
//     is skipped with a warning.
//   - A field that is not a valid $6$ or $7$ hash (for example a plain-text
//     password) drops the user with a warning worded like mosquitto's log.
//   - When a username appears twice the later line wins, with a warning
//     (mosquitto leaves this undefined).
//
// The error is only for a failing reader.
func ReadDB(r io.Reader, name string) (*DB, []Warning, error) {
	db := &DB{users: map[string]dbEntry{}}
	var warns []Warning
	seen := map[string]int{} // user -> line of its previous entry
	err := eachLine(r, func(n int, line string) error {
		if strings.HasPrefix(line, "#") || !strings.Contains(line, ":") {
			return nil
		}
		user, field, ok := splitLine(line)
		if len(user) >= MaxLength {
			warns = append(warns, Warning{Line: n, Msg: fmt.Sprintf(
				"Warning: Invalid line in password file '%s', username too long.", name)})
			return nil
		}
		if !ok || field == "" {
			warns = append(warns, Warning{Line: n, User: user, Msg: fmt.Sprintf(
				"Warning: Invalid line in password file '%s': %s", name, user)})
			return nil
		}
		if prev, dup := seen[user]; dup {
			warns = append(warns, Warning{Line: n, User: user, Msg: fmt.Sprintf(
				"Warning: Duplicate user %s in password file '%s' (lines %d and %d), using line %d.",
				user, name, prev, n, n)})
		}
		seen[user] = n
		h, err := parseHash(field)
		if err != nil {
			delete(db.users, user)
			warns = append(warns, Warning{Line: n, User: user, Msg: problem(err).brokerMessage(user)})
			return nil
		}
		db.users[user] = dbEntry{field: field, hash: h}
		return nil
	})
	if err != nil {
		return nil, warns, fmt.Errorf("read password file %s: %w", name, err)
	}
	return db, warns, nil
}

// Lookup returns the password field of user.
func (db *DB) Lookup(user string) (hash string, ok bool) {
	e, ok := db.users[user]
	return e.field, ok
}

// Len returns the number of usable entries.
func (db *DB) Len() int { return len(db.users) }

// Users returns the usernames, sorted.
func (db *DB) Users() []string {
	us := make([]string, 0, len(db.users))
	for u := range db.users {
		us = append(us, u)
	}
	sort.Strings(us)
	return us
}

// dummySalt and dummyKey make the hash of an unknown user (see
// Authenticate). They are zero arrays rather than a package-level
// parsedHash with make()s, which the package initialiser would build at
// every start of the binary.
var (
	dummySalt [saltLen]byte
	dummyKey  [keyLen]byte
)

// Authenticate reports whether user exists and password matches its hash.
// The hash comparison takes constant time, and an unknown user costs a
// default-strength hash too.
func (db *DB) Authenticate(user, password string) bool {
	e, ok := db.users[user]
	if !ok {
		// An unknown username costs about as much time as a wrong password.
		parsedHash{kind: '7', iter: DefaultIterations, salt: dummySalt[:], key: dummyKey[:]}.verify(password)
		return false
	}
	return e.hash.verify(password)
}
