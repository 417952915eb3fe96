// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

const (
	hashA = "$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w=="
	hashB = "$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw=="
)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		users []string
		hash  []string
	}{
		{"empty file", "", nil, nil},
		{"one line", "alice:" + hashA + "\n", []string{"alice"}, []string{hashA}},
		{"no final newline", "alice:x\nbob:y", []string{"alice", "bob"}, []string{"x", "y"}},
		{"crlf", "alice:x\r\nbob:y\r\n", []string{"alice", "bob"}, []string{"x", "y"}},
		{"blanks trimmed", " alice\t: x \n", []string{"alice"}, []string{"x"}},
		{"strtok: double colon", "a::b\n", []string{"a"}, []string{"b"}},
		{"strtok: leading colon", ":a:b\n", []string{"a"}, []string{"b"}},
		{"strtok: third field ignored", "a:b:c\n", []string{"a"}, []string{"b"}},
		{"plain-text field accepted", "alice:secret\n", []string{"alice"}, []string{"secret"}},
		{"duplicates kept", "a:x\na:y\n", []string{"a", "a"}, []string{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.in))
			require.NoError(t, err)
			var users, hashes []string
			for _, e := range f.Entries {
				users = append(users, e.User)
				hashes = append(hashes, e.Hash)
			}
			require.Equal(t, tt.users, users)
			require.Equal(t, tt.hash, hashes)
		})
	}
}

func TestParseCorrupt(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
	}{
		{"comment", "# users\nalice:x\n", 1},
		{"blank line", "alice:x\n\nbob:y\n", 2},
		{"no colon", "alice:x\nbob\n", 2},
		{"empty field", "alice:\n", 1},
		{"blank field", "alice:   \n", 1},
		{"empty user", " :x\n", 1},
		{"only colons", ":::\n", 1},
		{"last line without newline", "a:x\nb:y\nc", 3},
		{"crlf blank line", "a:x\r\n\r\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "want ParseError, got %v", err)
			require.Equal(t, tt.line, pe.Line)
			require.EqualError(t, err, "Corrupt password file at line "+strconv.Itoa(tt.line)+".")
		})
	}
}

func TestParseReadError(t *testing.T) {
	_, err := Parse(iotest.ErrReader(errors.New("disk on fire")))
	require.EqualError(t, err, "disk on fire")
}

func TestParseLongLine(t *testing.T) {
	long := strings.Repeat("u", MaxLength+10)
	f, err := Parse(strings.NewReader(long + ":x\n"))
	require.NoError(t, err)
	require.Equal(t, long, f.Entries[0].User)
}

func TestFileRoundTripKeepsLines(t *testing.T) {
	// Unchanged lines, odd spacing and CRLF included, are written back
	// byte for byte; only the changed user's line is new.
	in := " alice : " + hashA + " \r\nbob:" + hashB + ":extra\ncarol:old\n"
	f, err := Parse(strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, in, string(f.Bytes()))

	require.False(t, f.Set("carol", "new"))
	require.Equal(t, " alice : "+hashA+" \r\nbob:"+hashB+":extra\ncarol:new\n", string(f.Bytes()))

	require.True(t, f.Set("dave", "d"))
	require.True(t, strings.HasSuffix(string(f.Bytes()), "carol:new\ndave:d\n"))
}

func TestFileNoFinalNewline(t *testing.T) {
	f, err := Parse(strings.NewReader("a:x"))
	require.NoError(t, err)
	f.Set("b", "y")
	require.Equal(t, "a:x\nb:y\n", string(f.Bytes()))
}

func TestFileSetReplacesAllDuplicates(t *testing.T) {
	f, err := Parse(strings.NewReader("a:1\nb:2\na:3\n"))
	require.NoError(t, err)
	require.False(t, f.Set("a", "n"))
	require.Equal(t, "a:n\nb:2\na:n\n", string(f.Bytes()))
	e, ok := f.Lookup("a")
	require.True(t, ok)
	require.Equal(t, "n", e.Hash)
	_, ok = f.Lookup("zed")
	require.False(t, ok)
}

func TestFileDelete(t *testing.T) {
	f, err := Parse(strings.NewReader("a:1\nb:2\na:3\nc:4\n"))
	require.NoError(t, err)
	require.True(t, f.Delete("a"))
	require.Equal(t, "b:2\nc:4\n", string(f.Bytes()))
	require.False(t, f.Delete("a"))
	require.True(t, f.Delete("b"))
	require.True(t, f.Delete("c"))
	require.Empty(t, f.Bytes())
}

func TestFileRehash(t *testing.T) {
	f, err := Parse(strings.NewReader("alice:secret\nbob:test\n"))
	require.NoError(t, err)
	salt := bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 2)
	r := bytes.NewReader(salt)
	require.NoError(t, f.Rehash(func(p string) (string, error) {
		return Hash(p, HashOptions{Rand: r})
	}))
	require.Equal(t, "alice:"+hashA+"\n", string(f.Bytes()[:len("alice:"+hashA+"\n")]))
	e, _ := f.Lookup("bob")
	ok, err := Verify("test", e.Hash)
	require.NoError(t, err)
	require.True(t, ok)

	// The error of the hash function stops the rehash.
	boom := errors.New("boom")
	require.ErrorIs(t, f.Rehash(func(string) (string, error) { return "", boom }), boom)
}

func TestLine(t *testing.T) {
	require.Equal(t, "alice:"+hashA+"\n", Line("alice", hashA))
}
