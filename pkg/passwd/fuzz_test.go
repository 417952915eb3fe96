// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzParse runs both readers, the tool's strict Parse and the broker's
// lenient ReadDB, over arbitrary input. Seeds live in testdata/fuzz/FuzzParse
// and include the file written by mosquitto_passwd.
func FuzzParse(f *testing.F) {
	if raw, err := os.ReadFile("testdata/mosquitto_passwd.txt"); err == nil {
		f.Add(raw)
	}
	f.Add([]byte("alice:" + hashA + "\n"))
	f.Add([]byte("# c\n\nx::y:z\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, perr := Parse(bytes.NewReader(data))
		if perr == nil {
			want := data
			if len(data) > 0 && data[len(data)-1] != '\n' {
				want = append(slices.Clone(data), '\n')
			}
			if got := pf.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("round trip changed the file:\n%q\n%q", want, got)
			}
			again, err := Parse(bytes.NewReader(pf.Bytes()))
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			if len(again.Entries) != len(pf.Entries) {
				t.Fatalf("re-parse: %d entries, want %d", len(again.Entries), len(pf.Entries))
			}
			for i, e := range pf.Entries {
				if e.User == "" || e.Hash == "" || strings.Contains(e.User, ":") || strings.Contains(e.Hash, ":") {
					t.Fatalf("bad entry %q", e)
				}
				if again.Entries[i].User != e.User || again.Entries[i].Hash != e.Hash {
					t.Fatalf("re-parse: entry %d is %q, want %q", i, again.Entries[i], e)
				}
			}
			// Rewriting every entry keeps the users.
			pf.Rehash(func(s string) (string, error) { return s, nil })
			again, err = Parse(bytes.NewReader(pf.Bytes()))
			if err != nil || len(again.Entries) != len(pf.Entries) {
				t.Fatalf("re-parse after rewrite: %v", err)
			}
		}

		db, warns, err := ReadDB(bytes.NewReader(data), "fuzz")
		if err != nil {
			t.Fatalf("ReadDB failed on a memory reader: %v", err)
		}
		for _, w := range warns {
			if w.Msg == "" || w.Line < 1 {
				t.Fatalf("bad warning %+v", w)
			}
		}
		for _, u := range db.Users() {
			h, ok := db.Lookup(u)
			if !ok || CheckHash(h) != nil || strings.Contains(u, ":") {
				t.Fatalf("unusable entry %q:%q kept", u, h)
			}
			if perr == nil {
				if _, ok := pf.Lookup(u); !ok {
					t.Fatalf("broker user %q not seen by the strict parser", u)
				}
			}
		}
	})
}
