// SPDX-License-Identifier: Apache-2.0

package iostreams

import "testing"

func TestColorEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		tty  bool
		env  map[string]string
		want bool
	}{
		{"terminal", true, map[string]string{"TERM": "xterm-256color"}, true},
		{"no TERM", true, nil, true},
		{"pipe", false, map[string]string{"TERM": "xterm"}, false},
		{"NO_COLOR", true, map[string]string{"NO_COLOR": "1", "TERM": "xterm"}, false},
		{"TERM=dumb", true, map[string]string{"TERM": "dumb"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _, _ := Test()
			s.OutTTY = tc.tty
			s.Getenv = func(k string) string { return tc.env[k] }
			if got := s.ColorEnabled(); got != tc.want {
				t.Fatalf("ColorEnabled() = %v, want %v", got, tc.want)
			}
		})
	}
}
