// SPDX-License-Identifier: Apache-2.0

// Package acl reads mosquitto's acl_file (ParseACL) and answers its
// question: may this client publish to or read from a topic (ACL.Allowed).
// It also owns MQTT topic filter matching (Match, ValidFilter), which the broker, the bridge
// and the subscriber share, and FileError, the file:line error of the
// mosquitto file parsers (acl_file, mosquitto.conf).
package acl

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// access is a bit set of the operations an ACL rule grants. The zero value
// is mosquitto's "deny".
type access uint8

const (
	accessDeny  access = 0
	accessRead  access = 1
	accessWrite access = 2
)

// aclRule is one `topic` line of a user (or the anonymous) section.
type aclRule struct {
	filter string
	access access
}

// patternSegment is a piece of a `pattern` filter: literal text, or the
// client id (%c) or username (%u) to be substituted at check time.
type patternSegment struct {
	kind byte // 0 literal, 'c' client id, 'u' username
	text string
}

// aclPattern is one `pattern` line.
type aclPattern struct {
	raw     string
	segs    []patternSegment
	hasUser bool // contains %u: skipped for clients without username
	access  access
}

// ACL is a parsed mosquitto ACL file (acl_file). The zero value and a nil
// *ACL deny nothing: a broker without acl_file allows everything, as
// mosquitto does. An ACL is immutable after ParseACL and safe for concurrent
// use; reloading builds a new one.
type ACL struct {
	anonymous []aclRule            // topic lines before the first user line
	users     map[string][]aclRule // topic lines per `user` section (merged)
	patterns  []aclPattern         // pattern lines, wherever they appear
	warnings  []string
	loaded    bool // parsed from a file: nothing matched means denied
}

// FileError is an error in a mosquitto.conf or ACL file. Its
// message is mosquitto's, prefixed with the file name and line number
// ("acl:3: Invalid topic access type "rw"").
type FileError struct {
	File string // file name as given
	Line int    // 1-based line number
	Msg  string // mosquitto's wording, without "Error: " and final period
}

// Error implements error.
func (e *FileError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ParseACL reads a mosquitto ACL file. name is used in error and warning
// messages only. The grammar and its quirks follow mosquitto 2.0's
// src/security_default.c: `#` comments only in column 0, tokens separated by
// spaces only, `topic [read|write|readwrite|deny] FILTER`,
// `pattern [access] FILTER` with %c and %u, `user NAME` (rest of the line).
// The first error aborts parsing and is returned as a *FileError.
func ParseACL(name string, r io.Reader) (*ACL, error) {
	a := &ACL{users: map[string][]aclRule{}, loaded: true}
	p := aclParser{acl: a, name: name}
	br := bufio.NewReader(r)
	for {
		raw, readErr := br.ReadString('\n')
		if readErr != nil && readErr != io.EOF {
			return nil, fmt.Errorf("read acl_file %s: %w", name, readErr)
		}
		if raw == "" && readErr == io.EOF {
			break
		}
		p.lineNo++
		if err := p.line(strings.TrimRightFunc(raw, isCSpace)); err != nil {
			return nil, err
		}
		if readErr == io.EOF {
			break
		}
	}
	return a, nil
}

// aclParser holds the state of ParseACL between lines.
type aclParser struct {
	acl     *ACL
	name    string
	lineNo  int
	user    string
	hasUser bool // a `user` line was seen: topic lines belong to user
}

func (p *aclParser) errorf(format string, args ...any) error {
	return &FileError{File: p.name, Line: p.lineNo, Msg: fmt.Sprintf(format, args...)}
}

// line parses one line with trailing whitespace removed.
func (p *aclParser) line(line string) error {
	if strings.HasPrefix(line, "#") {
		return nil
	}
	keyword, rest, ok := nextToken(line)
	if !ok {
		return nil // blank, or only spaces
	}
	switch keyword {
	case "topic", "pattern":
		accessWord, after, ok := nextToken(rest)
		if !ok {
			return p.errorf("Empty topic")
		}
		filter, acc := accessWord, accessRead|accessWrite
		if after != "" {
			filter = strings.TrimFunc(after, isCSpace)
			switch accessWord {
			case "read":
				acc = accessRead
			case "write":
				acc = accessWrite
			case "readwrite":
				acc = accessRead | accessWrite
			case "deny":
				acc = accessDeny
			default:
				return p.errorf("Invalid topic access type %q", accessWord)
			}
		} // else `topic foo`: the single token is the filter, readwrite.
		if !ValidFilter(filter) {
			return p.errorf("Invalid ACL topic %q", filter)
		}
		a := p.acl
		switch {
		case keyword == "pattern":
			if !strings.Contains(filter, "%c") && !strings.Contains(filter, "%u") {
				a.warnings = append(a.warnings, fmt.Sprintf("%s:%d: ACL pattern '%s' does not contain '%%c' or '%%u'", p.name, p.lineNo, filter))
			}
			a.patterns = appendPattern(a.patterns, compilePattern(filter, acc))
		case p.hasUser:
			a.users[p.user] = appendRule(a.users[p.user], aclRule{filter: filter, access: acc})
		default:
			a.anonymous = appendRule(a.anonymous, aclRule{filter: filter, access: acc})
		}
	case "user":
		u := strings.TrimFunc(rest, isCSpace)
		if u == "" {
			return p.errorf("Missing username")
		}
		p.user, p.hasUser = u, true
	default:
		return p.errorf("Invalid line: %s", line)
	}
	return nil
}

// Warnings returns the non-fatal problems found while parsing, each naming
// file and line (e.g. a pattern without %c or %u).
func (a *ACL) Warnings() []string {
	if a == nil {
		return nil
	}
	return append([]string(nil), a.warnings...)
}

// appendRule keeps deny rules in front of all others, as mosquitto does, so
// that a deny anywhere in a section wins over an earlier grant.
func appendRule(rules []aclRule, r aclRule) []aclRule {
	if r.access != accessDeny {
		return append(rules, r)
	}
	return append([]aclRule{r}, rules...)
}

func appendPattern(ps []aclPattern, p aclPattern) []aclPattern {
	if p.access != accessDeny {
		return append(ps, p)
	}
	return append([]aclPattern{p}, ps...)
}

// compilePattern splits a pattern filter into literal text and %c/%u
// placeholders, scanning left to right exactly as mosquitto's substitution
// loop does ("%%c" is a literal '%' followed by the client id).
func compilePattern(filter string, acc access) aclPattern {
	p := aclPattern{raw: filter, access: acc, hasUser: strings.Contains(filter, "%u")}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.segs = append(p.segs, patternSegment{text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(filter); i++ {
		if filter[i] == '%' && i+1 < len(filter) && (filter[i+1] == 'c' || filter[i+1] == 'u') {
			flush()
			p.segs = append(p.segs, patternSegment{kind: filter[i+1]})
			i++
			continue
		}
		lit.WriteByte(filter[i])
	}
	flush()
	return p
}

// Allowed reports whether a client may write (publish) to or read (receive
// from) topic, evaluating the rules as mosquitto 2.0 does:
//
//  1. a nil ACL allows everything (no acl_file configured);
//  2. the client's `user` section (anonymous clients: the rules before the
//     first `user` line), deny rules first, then file order: the first rule
//     whose filter matches decides; deny denies, a grant for the requested
//     access allows, otherwise the search goes on;
//  3. when pattern rules exist, a username or client id containing '+' or
//     '#' is denied;
//  4. the patterns (deny first) with %c and %u substituted; patterns with
//     %u are skipped for anonymous clients;
//  5. nothing matched: denied.
//
// Wildcards never match topics beginning with '$' unless the filter begins
// with '$' as well. topic must be a topic name; one containing '+' or '#'
// is denied.
func (a *ACL) Allowed(clientID, username string, anonymous bool, topic string, write bool) bool {
	if a == nil || !a.loaded {
		return true
	}
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return false
	}
	want := accessRead
	if write {
		want = accessWrite
	}
	rules := a.anonymous
	if !anonymous {
		rules = a.users[username]
	}
	for i := range rules {
		if Match(rules[i].filter, topic) {
			if rules[i].access == accessDeny {
				return false
			}
			if rules[i].access&want != 0 {
				return true
			}
		}
	}
	if len(a.patterns) == 0 {
		return false
	}
	if (!anonymous && strings.ContainsAny(username, "+#")) || strings.ContainsAny(clientID, "+#") {
		return false
	}
	var stack [256]byte
	for i := range a.patterns {
		p := &a.patterns[i]
		if p.hasUser && anonymous {
			continue
		}
		buf := stack[:0]
		for _, s := range p.segs {
			switch s.kind {
			case 'c':
				buf = append(buf, clientID...)
			case 'u':
				buf = append(buf, username...)
			default:
				buf = append(buf, s.text...)
			}
		}
		if Match(buf, topic) {
			if p.access == accessDeny {
				return false
			}
			if p.access&want != 0 {
				return true
			}
		}
	}
	return false
}

// Match reports whether the topic name matches the subscription
// filter, with MQTT's rule that wildcards do not match a leading '$'
// [MQTT-4.7.2-1]. filter must be a valid filter; it is generic so that a
// substituted pattern can be matched from a stack buffer without allocating.
func Match[F ~string | ~[]byte](filter F, topic string) bool {
	if len(filter) == 0 || len(topic) == 0 {
		return false
	}
	if (filter[0] == '$') != (topic[0] == '$') {
		return false
	}
	fi, ti := 0, 0
	for {
		// Both fi and ti are at the start of a level.
		switch {
		case filter[fi] == '#':
			return true
		case filter[fi] == '+':
			fi++
			for ti < len(topic) && topic[ti] != '/' {
				ti++
			}
		default:
			for fi < len(filter) && filter[fi] != '/' {
				if ti >= len(topic) || topic[ti] != filter[fi] {
					return false
				}
				fi++
				ti++
			}
			if ti < len(topic) && topic[ti] != '/' {
				return false
			}
		}
		fEnd, tEnd := fi == len(filter), ti == len(topic)
		switch {
		case fEnd && tEnd:
			return true
		case tEnd:
			// "a/#" matches "a" [MQTT-4.7.1-2].
			return len(filter)-fi == 2 && filter[fi+1] == '#'
		case fEnd:
			return false
		}
		fi++
		ti++
		if fi == len(filter) {
			// Filter ends with '/', topic continues: only an empty last
			// level would match, and ti < len(topic) here only if the
			// topic has more levels or characters.
			return ti == len(topic)
		}
	}
}

// ValidFilter is mosquitto_sub_topic_check: '+' and '#' must fill a whole
// level, '#' must be last, at most 65535 bytes.
func ValidFilter(f string) bool {
	if len(f) > 65535 {
		return false
	}
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '+':
			if (i > 0 && f[i-1] != '/') || (i+1 < len(f) && f[i+1] != '/') {
				return false
			}
		case '#':
			if (i > 0 && f[i-1] != '/') || i+1 != len(f) {
				return false
			}
		}
	}
	return true
}

// nextToken is strtok_r(s, " "): it skips leading spaces and returns the
// next space-delimited token and what follows the single delimiter after it.
func nextToken(s string) (tok, rest string, ok bool) {
	s = strings.TrimLeft(s, " ")
	if s == "" {
		return "", "", false
	}
	i := strings.IndexByte(s, ' ')
	if i < 0 {
		return s, "", true
	}
	return s[:i], s[i+1:], true
}

// isCSpace is C's isspace in the "C" locale.
func isCSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}
