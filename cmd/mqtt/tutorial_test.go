// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
	"github.com/stretchr/testify/require"
)

// The tutorial (docs/tutorial.md) is only worth something if every command
// in it works. TestTutorialCommandsAreTested fails when a command of the
// tutorial is not run, as written, by one of the tutorial_*.txtar scripts
// (which TestScript runs), so the document cannot drift from what is tested.
//
// What "as written" means:
//   - Commands are the `mqtt ...` commands in the ```sh blocks, split at
//     pipes, `;`, `&&`, `||` and `&`, with comments, leading VAR=value
//     assignments and redirections removed. Each is compared word by word
//     (after shell quoting) with the `exec mqtt ...` / `status N mqtt ...`
//     lines of the scripts (after testscript quoting).
//   - Flags that only say where the broker is are dropped on both sides:
//     -h/--host and -p/--port with their value, and the broker's --tls-port and
//     --ready-file FILE. The tutorial uses the default localhost:1883; the
//     scripts use free ports, through MQTT_HOST/MQTT_PORT or these flags.
//   - A script may add -C N to an `mqtt sub` that the tutorial runs until
//     Ctrl-C: the script cannot press Ctrl-C at the right moment without a
//     race, so it stops the subscriber after the messages it expects.
//   - A VAR=value prefix in the tutorial must appear as `env VAR=value` in
//     one of the scripts.
//   - A file written with a here-document (`cat > FILE <<'EOF'`) must be a
//     `-- FILE --` or `-- DIR/FILE --` section (so one script can hold
//     several versions) with the same content in one of the scripts,
//     where a $VAR in the script's copy (which the script fills in with
//     expandenv, e.g. "listener $PORT localhost") stands for any word.
func TestTutorialCommandsAreTested(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "tutorial.md"))
	require.NoError(t, err)
	cmds, env, files, err := parseDocCommands(string(doc))
	require.NoError(t, err)
	require.NotEmpty(t, cmds, "no mqtt commands found in docs/tutorial.md")

	scripts, err := filepath.Glob(filepath.Join("testdata", "script", "tutorial_*.txtar"))
	require.NoError(t, err)
	require.NotEmpty(t, scripts, "no testdata/script/tutorial_*.txtar scripts")
	var tested scriptFacts
	for _, s := range scripts {
		a, err := txtar.ParseFile(s)
		require.NoError(t, err)
		f, err := parseScript(a)
		require.NoError(t, err, s)
		tested.add(f)
	}

	for _, c := range cmds {
		if !tested.runs(c.args) {
			t.Errorf("docs/tutorial.md:%d: %q is not run by any testdata/script/tutorial_*.txtar (normalised: %s)",
				c.line, c.text, strings.Join(normalise(c.args), " "))
		}
	}
	for _, kv := range env {
		if !slices.Contains(tested.env, kv) {
			t.Errorf("docs/tutorial.md sets %s, but no tutorial script has `env %s`", kv, kv)
		}
	}
	for _, f := range files {
		versions := tested.files[path.Base(f.name)]
		if len(versions) == 0 {
			t.Errorf("docs/tutorial.md:%d writes %s, but no tutorial script has a -- %s -- section", f.line, f.name, f.name)
			continue
		}
		if !slices.ContainsFunc(versions, func(v string) bool { return sameFile(f.content, v) }) {
			t.Errorf("docs/tutorial.md:%d writes %s with\n%s\nbut no tutorial script's -- %s -- section is the same; they have\n%s",
				f.line, f.name, f.content, f.name, strings.Join(versions, "----\n"))
		}
	}
}

// scriptVar is a $VAR or ${VAR} in a script's file.
var scriptVar = regexp.MustCompile(`\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)`)

// sameFile reports whether doc, a file in the tutorial, is script, a file
// of a tutorial script, where a $VAR in script matches any word.
func sameFile(doc, script string) bool {
	var pattern strings.Builder
	pattern.WriteString("^")
	last := 0
	for _, m := range scriptVar.FindAllStringIndex(script, -1) {
		pattern.WriteString(regexp.QuoteMeta(script[last:m[0]]) + `\S+`)
		last = m[1]
	}
	pattern.WriteString(regexp.QuoteMeta(script[last:]) + "$")
	return regexp.MustCompile(pattern.String()).MatchString(doc)
}

// checkedPrograms are the programs whose commands in the tutorial must be
// run by a tutorial script: mqtt, and the mosquitto clients the tutorial
// uses to show what goes over the wire.
var checkedPrograms = map[string]bool{"mqtt": true, "mosquitto_pub": true, "mosquitto_sub": true}

// docFile is a file the tutorial writes with a here-document.
type docFile struct {
	line          int
	name, content string
}

// docCommand is one `mqtt ...` command of the tutorial.
type docCommand struct {
	line int      // line number in the document
	text string   // the command as written
	args []string // the command's words, from the program name on
}

// parseDocCommands returns the mqtt commands of the ```sh blocks of md, the
// VAR=value assignments in front of them and the here-document files.
func parseDocCommands(md string) (cmds []docCommand, env []string, files []docFile, err error) {
	lines := strings.Split(md, "\n")
	inSh := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "```") {
			inSh = !inSh && trimmed == "```sh"
			continue
		}
		if !inSh {
			continue
		}
		start := i
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimSpace(lines[i])
		}
		words, err := shellWords(l)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("docs/tutorial.md:%d: %v", start+1, err)
		}
		for _, simple := range splitOps(words) {
			if name, delim, ok := heredoc(simple); ok {
				var body []string
				for i++; i < len(lines) && strings.TrimSpace(lines[i]) != delim; i++ {
					body = append(body, lines[i])
				}
				if i == len(lines) {
					return nil, nil, nil, fmt.Errorf("docs/tutorial.md:%d: here-document %s is not closed by %s", start+1, name, delim)
				}
				files = append(files, docFile{line: start + 1, name: name, content: strings.Join(body, "\n") + "\n"})
				continue
			}
			simple = dropRedirections(simple)
			for len(simple) > 0 && isAssignment(simple[0].s) {
				env = append(env, simple[0].s)
				simple = simple[1:]
			}
			if len(simple) == 0 || !checkedPrograms[simple[0].s] || simple[0].op {
				continue
			}
			var args []string
			for _, w := range simple {
				args = append(args, w.s)
			}
			cmds = append(cmds, docCommand{line: start + 1, text: strings.TrimSpace(l), args: args})
		}
	}
	return cmds, env, files, nil
}

// word is a shell word; op marks an unquoted operator (| & ; && || < > >> <<).
type word struct {
	s  string
	op bool
}

// shellWords splits a line the way sh does for the simple commands used in
// the tutorial: single and double quotes, backslash escapes, comments and
// operators. $VAR is kept as written.
func shellWords(line string) ([]word, error) {
	var words []word
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, word{s: cur.String()})
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			return words, nil
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(line) {
					return nil, fmt.Errorf("unterminated \" in %q", line)
				}
				if line[i] == '"' {
					break
				}
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("$`\"\\", line[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(line[i])
			}
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case strings.IndexByte("|&;<>", c) >= 0:
			flush()
			op := string(c)
			if i+1 < len(line) && (line[i+1] == c) {
				op += string(c)
				i++
			}
			words = append(words, word{s: op, op: true})
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, nil
}

// splitOps splits words into simple commands at | & ; && ||.
func splitOps(words []word) [][]word {
	var out [][]word
	var cur []word
	for _, w := range words {
		if w.op && (w.s == "|" || w.s == "&" || w.s == ";" || w.s == "&&" || w.s == "||") {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	return append(out, cur)
}

// heredoc recognises `cat > FILE <<'DELIM'` and returns FILE and DELIM.
func heredoc(simple []word) (name, delim string, ok bool) {
	if len(simple) == 5 && simple[0].s == "cat" && simple[1].op && simple[1].s == ">" && simple[3].op && simple[3].s == "<<" {
		return simple[2].s, simple[4].s, true
	}
	return "", "", false
}

// dropRedirections removes < > >> and their targets.
func dropRedirections(simple []word) []word {
	var out []word
	for i := 0; i < len(simple); i++ {
		if simple[i].op && (simple[i].s == "<" || simple[i].s == ">" || simple[i].s == ">>") {
			i++
			continue
		}
		out = append(out, simple[i])
	}
	return out
}

func isAssignment(s string) bool {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// scriptFacts is what the tutorial scripts run, set and contain.
type scriptFacts struct {
	cmds  [][]string          // argv of checked programs, testscript-unquoted
	env   []string            // `env K=V` arguments
	files map[string][]string // name → every version of the file
}

func (f *scriptFacts) add(g scriptFacts) {
	f.cmds = append(f.cmds, g.cmds...)
	f.env = append(f.env, g.env...)
	if f.files == nil {
		f.files = map[string][]string{}
	}
	for k, v := range g.files {
		f.files[k] = append(f.files[k], v...)
	}
}

// runs reports whether a script runs the tutorial command args.
func (f *scriptFacts) runs(args []string) bool {
	want := normalise(args)
	for _, c := range f.cmds {
		got := normalise(c)
		if slices.Equal(got, want) {
			return true
		}
		// -C N added by the script to an open-ended subscriber.
		if len(want) > 1 && want[0] == "mqtt" && want[1] == "sub" && !slices.Contains(want, "-C") {
			if i := slices.Index(got, "-C"); i > 0 && i+1 < len(got) &&
				slices.Equal(slices.Delete(slices.Clone(got), i, i+2), want) {
				return true
			}
		}
	}
	return false
}

// normalise drops the flags that only say where the broker is.
func normalise(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-h", "--host", "-p", "--port", "--tls-port", "--ready-file":
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// parseScript collects the mqtt commands, env settings and files of a script.
func parseScript(a *txtar.Archive) (scriptFacts, error) {
	f := scriptFacts{files: map[string][]string{}}
	for _, file := range a.Files {
		base := path.Base(file.Name)
		f.files[base] = append(f.files[base], string(file.Data))
	}
	for n, line := range strings.Split(string(a.Comment), "\n") {
		words, err := scriptWords(line)
		if err != nil {
			return f, fmt.Errorf("line %d: %v", n+1, err)
		}
		if len(words) > 0 && (words[0] == "!" || words[0] == "?") {
			words = words[1:]
		}
		if len(words) > 0 && strings.HasPrefix(words[0], "[") { // [condition]
			words = words[1:]
		}
		switch {
		case len(words) >= 2 && words[0] == "env":
			f.env = append(f.env, words[1:]...)
		case len(words) >= 2 && words[0] == "exec" && checkedPrograms[words[1]]:
			f.cmds = append(f.cmds, dropBackground(words[1:]))
		case len(words) >= 3 && words[0] == "status" && checkedPrograms[words[2]]:
			f.cmds = append(f.cmds, dropBackground(words[2:]))
		}
	}
	return f, nil
}

// scriptWords splits a testscript line: words are separated by spaces, and
// single quotes quote, and two single quotes inside quotes stand for one.
func scriptWords(line string) ([]string, error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return nil, nil
	}
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\'' && i+1 < len(line) && line[i+1] == '\'':
			cur.WriteByte('\'')
			i++
		case c == '\'':
			quoted = !quoted
			inWord = true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case !quoted && c == '#' && !inWord:
			return words, nil
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quoted string")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// dropBackground removes a trailing &name& (background execution).
func dropBackground(args []string) []string {
	if n := len(args); n > 0 && len(args[n-1]) > 1 && strings.HasPrefix(args[n-1], "&") && strings.HasSuffix(args[n-1], "&") {
		return args[:n-1]
	}
	return args
}

// TestTutorialParsers pins the two quoting dialects the drift test relies on.
func TestTutorialParsers(t *testing.T) {
	md := "text\n```sh\n" +
		"mqtt sub -t 'sensor/#' -v &          # terminal 1\n" +
		"MQTT_PASSWORD=secret mqtt pub -u alice -t \"a b\" -m it\\'s\n" +
		"mqtt pub -t x \\\n  -m y | tee log; mqtt sub -t z > out.txt\n" +
		"cat > broker.conf <<'EOF'\nallow_anonymous false\nEOF\n" +
		"python3 sensor.py\n" +
		"mosquitto_pub -d -t a -m b\n" +
		"```\n```console\nmqtt not/a/command\n```\n"
	cmds, env, files, err := parseDocCommands(md)
	require.NoError(t, err)
	var got [][]string
	for _, c := range cmds {
		got = append(got, c.args)
	}
	require.Equal(t, [][]string{
		{"mqtt", "sub", "-t", "sensor/#", "-v"},
		{"mqtt", "pub", "-u", "alice", "-t", "a b", "-m", "it's"},
		{"mqtt", "pub", "-t", "x", "-m", "y"},
		{"mqtt", "sub", "-t", "z"},
		{"mosquitto_pub", "-d", "-t", "a", "-m", "b"},
	}, got)
	require.Equal(t, []string{"MQTT_PASSWORD=secret"}, env)
	require.Equal(t, []docFile{{line: 7, name: "broker.conf", content: "allow_anonymous false\n"}}, files)

	a := txtar.Parse([]byte("# comment\nenv MQTT_PORT=$PORT\n" +
		"exec mqtt sub -p $PORT -t 'sensor/#' -v -C 2 &sub&\n" +
		"! exec mqtt pub -t 'it''s' -m 'a b'\n" +
		"status 5 mqtt pub -t a -m b\n" +
		"exec mqtt broker --port $PORT --ready-file ready &broker&\n" +
		"[interop] exec mosquitto_sub -p $PORT -t a -C 1\n" +
		"-- f.conf --\nx 1\n-- v2/f.conf --\nx 2\n"))
	f, err := parseScript(a)
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"mqtt", "sub", "-p", "$PORT", "-t", "sensor/#", "-v", "-C", "2"},
		{"mqtt", "pub", "-t", "it's", "-m", "a b"},
		{"mqtt", "pub", "-t", "a", "-m", "b"},
		{"mqtt", "broker", "--port", "$PORT", "--ready-file", "ready"},
		{"mosquitto_sub", "-p", "$PORT", "-t", "a", "-C", "1"},
	}, f.cmds)
	require.Equal(t, []string{"MQTT_PORT=$PORT"}, f.env)
	require.Equal(t, []string{"x 1\n", "x 2\n"}, f.files["f.conf"])

	require.True(t, f.runs([]string{"mqtt", "sub", "-t", "sensor/#", "-v"}), "-C added to an open-ended sub")
	require.False(t, f.runs([]string{"mqtt", "sub", "-t", "sensor/#", "-v", "-C", "3"}), "a different -C")
	require.True(t, f.runs([]string{"mqtt", "broker"}))

	require.True(t, sameFile("listener 1883 localhost\nallow_anonymous false\n", "listener $PORT localhost\nallow_anonymous false\n"))
	require.True(t, sameFile("listener 1883\n", "listener ${PORT}\n"))
	require.False(t, sameFile("listener 1883 localhost\nallow_anonymous true\n", "listener $PORT localhost\nallow_anonymous false\n"))
	require.False(t, sameFile("listener 1883 localhost\n", "listener $PORT\n"))
	require.True(t, sameFile("a.b (c)\n", "a.b (c)\n"))
	require.False(t, sameFile("axb (c)\n", "a.b (c)\n"))
	require.True(t, f.runs([]string{"mqtt", "pub", "-h", "localhost", "-t", "a", "-m", "b"}))
	require.False(t, f.runs([]string{"mqtt", "pub", "-t", "a", "-m", "c"}))
	require.True(t, f.runs([]string{"mosquitto_sub", "-t", "a", "-C", "1"}))
	require.False(t, f.runs([]string{"mqtt", "sub", "-t", "a", "-C", "1"}))
}
