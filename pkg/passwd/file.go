// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// Entry is one "user:field" line of a password file.
type Entry struct {
	User string // username, trimmed
	Hash string // password field, trimmed: a hash, or plain text before a -U rehash

	raw string // the line as read (without "\n"); "" for new or changed entries
}

// File is a password file as the mosquitto_passwd tool sees it: an ordered
// list of entries. Entries that are not changed are written back exactly as
// they were read.
type File struct {
	Entries []Entry // in file order
}

// Parse reads a password file strictly, like mosquitto_passwd: every line
// must be "user:field" with a non-empty user and field once blanks are
// trimmed. A comment, a blank line or a line without ':' gives a
// [*ParseError] with its line number. Hashes are not checked.
func Parse(r io.Reader) (*File, error) {
	f := &File{}
	err := eachLine(r, func(n int, line string) error {
		user, field, ok := splitLine(line)
		if !ok || user == "" || field == "" {
			return &ParseError{Line: n}
		}
		f.Entries = append(f.Entries, Entry{User: user, Hash: field, raw: line})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// eachLine calls fn for every line of r, without its "\n". Lines have no
// length limit; a final line without "\n" counts.
func eachLine(r io.Reader, fn func(n int, line string) error) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if line == "" && err != nil {
			return nil
		}
		if ferr := fn(n, strings.TrimSuffix(line, "\n")); ferr != nil {
			return ferr
		}
		if err != nil {
			return nil
		}
	}
}

// splitLine splits a line the way mosquitto does with strtok(line, ":"):
// the user is the first non-empty ':'-separated token, the field the second;
// anything after a further ':' is ignored. Both are trimmed of C blanks.
// ok is false when there are fewer than two tokens.
func splitLine(line string) (user, field string, ok bool) {
	var tok [2]string
	n := 0
	for s := range strings.SplitSeq(line, ":") {
		if s == "" {
			continue
		}
		tok[n] = s
		n++
		if n == 2 {
			break
		}
	}
	if n == 0 {
		return "", "", false
	}
	return trimBlanks(tok[0]), trimBlanks(tok[1]), n == 2
}

// trimBlanks trims what C's isspace matches, and nothing more.
func trimBlanks(s string) string {
	return strings.Trim(s, " \t\n\v\f\r")
}

// Lookup returns the first entry for user.
func (f *File) Lookup(user string) (Entry, bool) {
	for _, e := range f.Entries {
		if e.User == user {
			return e, true
		}
	}
	return Entry{}, false
}

// Set sets the password field of user. Like mosquitto_passwd it replaces
// every line of that user in place, or appends one line when there is none.
// It reports whether the user was added.
func (f *File) Set(user, hash string) (added bool) {
	found := false
	for i := range f.Entries {
		if f.Entries[i].User == user {
			f.Entries[i] = Entry{User: user, Hash: hash}
			found = true
		}
	}
	if !found {
		f.Entries = append(f.Entries, Entry{User: user, Hash: hash})
	}
	return !found
}

// Delete removes every line of user and reports whether there was one.
func (f *File) Delete(user string) bool {
	kept := f.Entries[:0]
	for _, e := range f.Entries {
		if e.User != user {
			kept = append(kept, e)
		}
	}
	removed := len(kept) != len(f.Entries)
	clear(f.Entries[len(kept):])
	f.Entries = kept
	return removed
}

// Rehash replaces the field of every entry with hash(field), as
// mosquitto_passwd -U does. Like mosquitto it does not detect fields that
// are already hashed. It stops at the first error.
func (f *File) Rehash(hash func(plain string) (string, error)) error {
	for i := range f.Entries {
		h, err := hash(f.Entries[i].Hash)
		if err != nil {
			return err
		}
		f.Entries[i] = Entry{User: f.Entries[i].User, Hash: h}
	}
	return nil
}

// Bytes encodes the file: one line per entry, each ending in "\n".
// Unchanged entries are written exactly as read.
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, e := range f.Entries {
		if e.raw != "" {
			b.WriteString(e.raw)
		} else {
			b.WriteString(e.User)
			b.WriteByte(':')
			b.WriteString(e.Hash)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Line returns the line for one user and hash, with its "\n".
func Line(user, hash string) string {
	return user + ":" + hash + "\n"
}
