// SPDX-License-Identifier: Apache-2.0

package acl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustACL(t testing.TB, text string) *ACL {
	t.Helper()
	a, err := ParseACL("acl", strings.NewReader(text))
	require.NoError(t, err)
	return a
}

// check is one Allowed question and its expected answer.
type check struct {
	client, user string
	anon         bool
	topic        string
	write        bool
	want         bool
}

func (c check) String() string {
	who := "anonymous"
	if !c.anon {
		who = "user " + c.user
	}
	op := "read"
	if c.write {
		op = "write"
	}
	return fmt.Sprintf("%s (client %q) %s %q", who, c.client, op, c.topic)
}

func runChecks(t *testing.T, a *ACL, checks []check) {
	t.Helper()
	for _, c := range checks {
		require.Equal(t, c.want, a.Allowed(c.client, c.user, c.anon, c.topic, c.write), c.String())
	}
}

func TestACLVerifiedExample(t *testing.T) {
	// reference/mosquitto.md §8.3, observed with mosquitto 2.0.20.
	a := mustACL(t, `# anonymous section
topic read public/#

user bob
topic write bob/out
topic deny secret/#
topic read #

pattern readwrite users/%u/#
`)
	runChecks(t, a, []check{
		{client: "c1", user: "bob", topic: "bob/out", write: true, want: true},
		{client: "c1", user: "bob", topic: "users/bob/x", write: true, want: true},
		{client: "c1", user: "bob", topic: "public/x", write: true, want: false},
		{client: "c1", user: "bob", topic: "secret/x", write: true, want: false},
		{client: "c1", user: "bob", topic: "users/alice/x", write: true, want: false},
		{client: "c1", user: "bob", topic: "public/x", want: true},
		{client: "c1", user: "bob", topic: "bob/out", want: true},
		{client: "c1", user: "bob", topic: "anything/else", want: true},
		{client: "c1", user: "bob", topic: "secret/x", want: false},
		{client: "c1", user: "bob", topic: "secret", want: false},
		{client: "c1", user: "bob", topic: "$SYS/broker/uptime", want: false},
		{client: "a1", anon: true, topic: "public/x", want: true},
		{client: "a1", anon: true, topic: "other", want: false},
		{client: "a1", anon: true, topic: "public/x", write: true, want: false},
		{client: "a1", anon: true, topic: "users/%u/x", write: true, want: false},
	})
}

func TestACLEvaluation(t *testing.T) {
	tests := []struct {
		name   string
		acl    string
		checks []check
	}{
		{
			name: "nothing matched is denied",
			acl:  "user alice\ntopic a\n",
			checks: []check{
				{user: "alice", topic: "a", want: true},
				{user: "alice", topic: "b", want: false},
				{user: "carol", topic: "a", want: false},
				{anon: true, topic: "a", want: false},
			},
		},
		{
			name: "access kinds",
			acl:  "user u\ntopic read r\ntopic write w\ntopic readwrite rw\ntopic both\n",
			checks: []check{
				{user: "u", topic: "r", want: true},
				{user: "u", topic: "r", write: true, want: false},
				{user: "u", topic: "w", want: false},
				{user: "u", topic: "w", write: true, want: true},
				{user: "u", topic: "rw", want: true},
				{user: "u", topic: "rw", write: true, want: true},
				{user: "u", topic: "both", want: true},
				{user: "u", topic: "both", write: true, want: true},
			},
		},
		{
			name: "a non-matching access keeps looking",
			acl:  "user u\ntopic read a/#\ntopic write a/b\n",
			checks: []check{
				{user: "u", topic: "a/b", write: true, want: true},
				{user: "u", topic: "a/c", write: true, want: false},
			},
		},
		{
			name: "deny wins wherever it appears",
			acl:  "user u\ntopic readwrite #\ntopic deny a/+/secret\n",
			checks: []check{
				{user: "u", topic: "a/b/secret", want: false},
				{user: "u", topic: "a/b/secret", write: true, want: false},
				{user: "u", topic: "a/b/public", want: true},
			},
		},
		{
			name: "user sections merge",
			acl:  "user u\ntopic read a\nuser v\ntopic read b\nuser u\ntopic read c\n",
			checks: []check{
				{user: "u", topic: "a", want: true},
				{user: "u", topic: "c", want: true},
				{user: "u", topic: "b", want: false},
				{user: "v", topic: "b", want: true},
				{user: "v", topic: "c", want: false},
			},
		},
		{
			name: "dollar topics need a dollar filter",
			acl:  "user u\ntopic read #\ntopic read +/broker/#\ntopic read $SYS/broker/load/#\npattern read +/%c\n",
			checks: []check{
				{user: "u", client: "c", topic: "$SYS/broker/uptime", want: false},
				{user: "u", client: "c", topic: "$SYS/c", want: false},
				{user: "u", client: "c", topic: "$SYS/broker/load/bytes", want: true},
				{user: "u", client: "c", topic: "$SYS", want: false},
				{user: "u", client: "c", topic: "$other", want: false},
			},
		},
		{
			name: "deny all does not deny dollar topics",
			acl:  "user u\ntopic deny #\ntopic read $SYS/#\n",
			checks: []check{
				{user: "u", topic: "$SYS/broker/uptime", want: true},
				{user: "u", topic: "a", want: false},
			},
		},
		{
			name: "patterns substitute client id and username",
			acl:  "pattern readwrite clients/%c/#\npattern read users/%u/inbox\npattern write %u/%c\n",
			checks: []check{
				{client: "dev1", user: "u", topic: "clients/dev1/temp", write: true, want: true},
				{client: "dev1", user: "u", topic: "clients/dev2/temp", write: true, want: false},
				{client: "dev1", user: "u", topic: "users/u/inbox", want: true},
				{client: "dev1", user: "u", topic: "users/u/inbox", write: true, want: false},
				{client: "dev1", user: "u", topic: "users/v/inbox", want: false},
				{client: "dev1", user: "u", topic: "u/dev1", write: true, want: true},
				{client: "dev1", anon: true, topic: "clients/dev1/x", want: true},
				{client: "dev1", anon: true, topic: "users/%u/inbox", want: false},
				{client: "dev1", anon: true, topic: "users//inbox", want: false},
			},
		},
		{
			name: "patterns are checked after the user section",
			acl:  "user u\ntopic read a\npattern write a\n",
			checks: []check{
				{user: "u", client: "c", topic: "a", write: true, want: true},
				{user: "v", client: "c", topic: "a", write: true, want: true},
				{user: "v", client: "c", topic: "a", want: false},
			},
		},
		{
			name: "deny patterns come first",
			acl:  "pattern read %c/#\npattern deny %c/private/#\n",
			checks: []check{
				{client: "c", anon: true, topic: "c/x", want: true},
				{client: "c", anon: true, topic: "c/private/x", want: false},
			},
		},
		{
			name: "wildcards in username or client id are denied when patterns exist",
			acl:  "user a+b\ntopic read x\nuser ok\ntopic read x\npattern read %c\n",
			checks: []check{
				// The user section is checked before the wildcard test.
				{user: "a+b", client: "c", topic: "x", want: true},
				{user: "a+b", client: "c", topic: "c", want: false},
				{user: "ok", client: "#", topic: "#", want: false},
				{user: "ok", client: "+", topic: "y", want: false},
				{user: "ok", client: "c", topic: "c", want: true},
				{user: "a#", client: "c", topic: "c", want: false},
				{anon: true, client: "c#", topic: "c#", want: false},
			},
		},
		{
			name: "wildcards in username are fine without patterns",
			acl:  "user a+b\ntopic read x\n",
			checks: []check{
				{user: "a+b", client: "#", topic: "x", want: true},
			},
		},
		{
			name: "%% before c is a literal percent",
			acl:  "pattern read %%c\n",
			checks: []check{
				{client: "id", anon: true, topic: "%id", want: true},
				{client: "id", anon: true, topic: "id", want: false},
			},
		},
		{
			name: "topic names with wildcards are denied",
			acl:  "topic readwrite #\n",
			checks: []check{
				{anon: true, topic: "a/+", want: false},
				{anon: true, topic: "#", want: false},
				{anon: true, topic: "", want: false},
				{anon: true, topic: "a/b", want: true},
			},
		},
		{
			name: "empty file denies everything",
			acl:  "",
			checks: []check{
				{user: "u", topic: "a", want: false},
				{anon: true, topic: "a", want: false},
			},
		},
		{
			name: "anonymous section is only for clients without username",
			acl:  "topic read a\nuser u\ntopic read b\n",
			checks: []check{
				{anon: true, topic: "a", want: true},
				{anon: true, topic: "b", want: false},
				{user: "u", topic: "a", want: false},
				{user: "", topic: "a", want: false},
			},
		},
		{
			name: "user names may contain spaces",
			acl:  "user   jane doe  \ntopic read a\n",
			checks: []check{
				{user: "jane doe", topic: "a", want: true},
				{user: "jane", topic: "a", want: false},
			},
		},
		{
			name: "filters may contain spaces",
			acl:  "user u\ntopic read   my topic/+  \n",
			checks: []check{
				{user: "u", topic: "my topic/x", want: true},
			},
		},
		{
			name: "single token after topic is the filter",
			acl:  "user u\ntopic read\ntopic deny\ntopic read\ta\n",
			checks: []check{
				{user: "u", topic: "read\ta", write: true, want: true},
				{user: "u", topic: "read", want: true},
				{user: "u", topic: "read", write: true, want: true},
				{user: "u", topic: "deny", write: true, want: true},
			},
		},
		{
			name: "CRLF line endings and indentation",
			acl:  "   user u\r\n  topic read a\r\n\r\n   \r\n",
			checks: []check{
				{user: "u", topic: "a", want: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runChecks(t, mustACL(t, tt.acl), tt.checks)
		})
	}
}

func TestACLNilAllowsEverything(t *testing.T) {
	var a *ACL
	require.True(t, a.Allowed("c", "u", false, "$SYS/x", true))
	require.True(t, (&ACL{}).Allowed("c", "", true, "a", false))
	require.Nil(t, a.Warnings())
}

func TestParseACLErrors(t *testing.T) {
	tests := []struct {
		name string
		acl  string
		line int
		msg  string
	}{
		{"unknown keyword", "topic read a\nfoo bar\n", 2, `Invalid line: foo bar`},
		{"indented comment", "\n  # comment\n", 2, `Invalid line:   # comment`},
		{"tab separator", "topic\tread a\n", 1, "Invalid line: topic\tread a"},
		{"uppercase keyword", "Topic a\n", 1, `Invalid line: Topic a`},
		{"empty topic", "user u\ntopic\n", 2, `Empty topic`},
		{"empty pattern", "pattern   \n", 1, `Empty topic`},
		{"bad access", "topic rw a/b\n", 1, `Invalid topic access type "rw"`},
		{"missing username", "user\n", 1, `Missing username`},
		{"missing username spaces", "user    \n", 1, `Missing username`},
		{"plus inside level", "topic read a/b+\n", 1, `Invalid ACL topic "a/b+"`},
		{"hash not last", "topic read a/#/b\n", 1, `Invalid ACL topic "a/#/b"`},
		{"hash inside level", "pattern read a#\n", 1, `Invalid ACL topic "a#"`},
		{"too long", "topic read " + strings.Repeat("a", 65536) + "\n", 1, `Invalid ACL topic "` + strings.Repeat("a", 65536) + `"`},
		{"line counted without final newline", "topic a\n\n# x\ntopic read a/#/b", 4, `Invalid ACL topic "a/#/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseACL("/etc/acl", strings.NewReader(tt.acl))
			require.Error(t, err)
			var fe *FileError
			require.True(t, errors.As(err, &fe), "%T", err)
			require.Equal(t, FileError{File: "/etc/acl", Line: tt.line, Msg: tt.msg}, *fe)
			require.Equal(t, fmt.Sprintf("/etc/acl:%d: %s", tt.line, tt.msg), err.Error())
		})
	}
}

func TestParseACLWarnings(t *testing.T) {
	a := mustACL(t, "pattern read %c/x\npattern read fixed/+\npattern write %u\n")
	require.Equal(t, []string{"acl:2: ACL pattern 'fixed/+' does not contain '%c' or '%u'"}, a.Warnings())
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/bc", false},
		{"a/bc", "a/b", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true},
		{"a/#", "a/", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"a/+/c", "a/b/d", false},
		{"a/", "a/", true},
		{"a/", "a/b", false},
		{"a//b", "a//b", true},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},
		{"+/#", "a", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "$SYS/x", true},
		{"$SYS/x", "$SYS/x", true},
		{"a", "$a", false},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Match(tt.filter, tt.topic), "%q ~ %q", tt.filter, tt.topic)
		require.Equal(t, tt.want, Match([]byte(tt.filter), tt.topic), "[]byte %q ~ %q", tt.filter, tt.topic)
	}
}

func TestValidFilter(t *testing.T) {
	for _, f := range []string{"a", "#", "+", "a/#", "+/+", "/", "a//b", "$SYS/#", "%c/+", "a b"} {
		require.True(t, ValidFilter(f), f)
	}
	for _, f := range []string{"a#", "#/a", "a/+b", "+a", "a/#/", "##", "++"} {
		require.False(t, ValidFilter(f), f)
	}
}

// FuzzParseACL checks that no input panics the parser or the evaluator, that
// every error names a line of the input, and two invariants of Allowed.
func FuzzParseACL(f *testing.F) {
	f.Add("topic read public/#\nuser bob\ntopic write bob/out\ntopic deny secret/#\npattern readwrite users/%u/#\n", "bob", "c1", "users/bob/x")
	f.Add("pattern %c/%u/%%c\n", "u", "c", "c/u/%c")
	f.Add("  # x\n", "", "", "a")
	f.Add("user \x00\ntopic \xff\n", "\x00", "", "\xff")
	f.Fuzz(func(t *testing.T, text, user, client, topic string) {
		a, err := ParseACL("f", strings.NewReader(text))
		if err != nil {
			var fe *FileError
			require.True(t, errors.As(err, &fe), "%T %v", err, err)
			require.GreaterOrEqual(t, fe.Line, 1)
			require.LessOrEqual(t, fe.Line, strings.Count(text, "\n")+1)
			return
		}
		for _, anon := range []bool{false, true} {
			for _, write := range []bool{false, true} {
				got := a.Allowed(client, user, anon, topic, write)
				if strings.ContainsAny(topic, "+#") || topic == "" {
					require.False(t, got)
				}
			}
		}
		// Appending "deny #" to the user section denies every non-$ topic.
		u := strings.TrimFunc(user, isCSpace)
		if u != "" && !strings.Contains(u, "\n") && topic != "" && topic[0] != '$' {
			denied := mustACL(t, text+"\nuser "+u+"\ntopic deny #\n")
			require.False(t, denied.Allowed(client, u, false, topic, true))
		}
	})
}

func BenchmarkACL(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("topic read public/#\n")
	for i := range 200 {
		fmt.Fprintf(&sb, "user user%d\ntopic read sensors/+/temp\ntopic write devices/%d/#\ntopic deny secret/#\n", i, i)
	}
	sb.WriteString("pattern readwrite clients/%c/#\npattern read users/%u/inbox/#\n")
	a := mustACL(b, sb.String())
	b.Run("user", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !a.Allowed("client-17", "user150", false, "sensors/kitchen/temp", false) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("pattern", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !a.Allowed("client-17", "user150", false, "users/user150/inbox/1", false) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("denied", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if a.Allowed("client-17", "user150", false, "other/topic/with/levels", true) {
				b.Fatal("allowed")
			}
		}
	})
}
