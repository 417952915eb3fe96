// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/iostreams"
	"github.com/mqttkit/mqttkit/pkg/passwd"
)

// refLine is reference §7.4's $7$ vector: user alice, password "secret".
const refLine = "alice:$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJNBvA+By+TXUqU6qCblO00w==\n"

// passwdRun is the outcome of one mqtt passwd run.
type passwdRun struct {
	err    error
	code   int
	stdout string
	stderr string
}

// msg is what Run would print for the error.
func (r passwdRun) msg() string {
	if r.err == nil {
		return ""
	}
	return message(r.err)
}

// runPasswdArgs runs `mqtt passwd args...` with io; when runF is nil the
// real run function runs.
func runPasswdArgs(ctx context.Context, ios *iostreams.IOStreams, runF func(context.Context, *Deps, *PasswdOptions) error, args ...string) error {
	d := newDeps(ios)
	cmd := newPasswdCmd(d, runF)
	cmd.OnUsageError = onUsageError("passwd")
	app := newApp(d)
	app.Commands = append(app.Commands[:0:0], cmd)
	return app.RunContext(ctx, append([]string{"mqtt", "passwd"}, args...))
}

// pipeRun runs with stdin (not a terminal) holding in.
func pipeRun(t *testing.T, in string, args ...string) passwdRun {
	t.Helper()
	ios, stdin, out, errOut := iostreams.Test()
	stdin.WriteString(in)
	err := runPasswdArgs(context.Background(), ios, nil, args...)
	return passwdRun{err: err, code: exitCode(err), stdout: out.String(), stderr: errOut.String()}
}

// ttyRun runs with stdin a terminal whose no-echo reads return secrets in
// order.
func ttyRun(t *testing.T, ctx context.Context, secrets []string, args ...string) passwdRun {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	ios.InTTY, ios.InFd = true, 42
	err := runPasswdArgs(ctx, ios, func(ctx context.Context, d *Deps, o *PasswdOptions) error {
		o.readSecret = func(ctx context.Context, fd int) (string, error) {
			require.Equal(t, 42, fd)
			if len(secrets) == 0 {
				<-ctx.Done() // a user who never presses Enter
				return "", ctx.Err()
			}
			s := secrets[0]
			secrets = secrets[1:]
			return s, nil
		}
		return runPasswd(ctx, d, o)
	}, args...)
	return passwdRun{err: err, code: exitCode(err), stdout: out.String(), stderr: errOut.String()}
}

func writeFile(t *testing.T, content string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	require.NoError(t, os.Chmod(p, mode))
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func verifies(t *testing.T, p, user, pw string) bool {
	t.Helper()
	db, _, err := passwd.LoadDB(p)
	require.NoError(t, err)
	return db.Authenticate(user, pw)
}

func TestNewPasswdCmd(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want PasswdOptions
	}{
		{"update interactive", []string{"pw", "alice"},
			PasswdOptions{File: "pw", User: "alice", HashType: passwd.TypeSHA512PBKDF2}},
		{"create batch", []string{"-c", "-b", "pw", "alice", "secret"},
			PasswdOptions{Create: true, Batch: true, File: "pw", User: "alice", Password: "secret", HashType: passwd.TypeSHA512PBKDF2}},
		{"long flags", []string{"--create", "--batch", "--hash", "sha512", "pw", "alice", "secret"},
			PasswdOptions{Create: true, Batch: true, File: "pw", User: "alice", Password: "secret", HashType: passwd.TypeSHA512}},
		{"sha512 and iterations", []string{"-H", "sha512-pbkdf2", "-I", "1000", "pw", "alice"},
			PasswdOptions{File: "pw", User: "alice", HashType: passwd.TypeSHA512PBKDF2, Iterations: 1000}},
		{"delete", []string{"-D", "pw", "alice"},
			PasswdOptions{Delete: true, File: "pw", User: "alice", HashType: passwd.TypeSHA512PBKDF2}},
		{"upgrade", []string{"-U", "pw"},
			PasswdOptions{Upgrade: true, File: "pw", HashType: passwd.TypeSHA512PBKDF2}},
		{"upgrade stdin", []string{"-U", "-"},
			PasswdOptions{Upgrade: true, File: "-", HashType: passwd.TypeSHA512PBKDF2}},
		{"stdout", []string{"-b", "-", "alice", "x"},
			PasswdOptions{Batch: true, File: "-", User: "alice", Password: "x", HashType: passwd.TypeSHA512PBKDF2}},
		{"check", []string{"--check", "pw", "alice"},
			PasswdOptions{Check: true, File: "pw", User: "alice", HashType: passwd.TypeSHA512PBKDF2}},
		{"check batch", []string{"--check", "-b", "pw", "alice", "x"},
			PasswdOptions{Check: true, Batch: true, File: "pw", User: "alice", Password: "x", HashType: passwd.TypeSHA512PBKDF2}},
		{"password starting with a dash", []string{"-b", "pw", "alice", "-x"},
			PasswdOptions{Batch: true, File: "pw", User: "alice", Password: "-x", HashType: passwd.TypeSHA512PBKDF2}},
		{"password with colon and spaces", []string{"-b", "pw", "alice", "a: b"},
			PasswdOptions{Batch: true, File: "pw", User: "alice", Password: "a: b", HashType: passwd.TypeSHA512PBKDF2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			var got *PasswdOptions
			err := runPasswdArgs(context.Background(), ios, func(_ context.Context, _ *Deps, o *PasswdOptions) error {
				got = o
				return nil
			}, tt.args...)
			require.NoError(t, err)
			require.NotNil(t, got.readSecret)
			got.readSecret = nil
			require.Equal(t, tt.want, *got)
		})
	}
}

func TestNewPasswdCmdUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "Error: Password file or username missing."},
		{"one arg", []string{"pw"}, "Error: Password file or username missing."},
		{"c missing", []string{"-c", "pw"}, "Error: -c argument given but password file or username missing."},
		{"cb missing", []string{"-c", "-b", "pw", "u"}, "Error: -c argument given but password file, username, or password missing."},
		{"b missing", []string{"-b", "pw", "u"}, "Error: -b argument given but password file, username, or password missing."},
		{"D missing", []string{"-D", "pw"}, "Error: -D argument given but password file or username missing."},
		{"U missing", []string{"-U"}, "Error: -U argument given but password file missing."},
		{"check missing", []string{"--check", "pw"}, "Error: --check argument given but password file or username missing."},
		{"c and D", []string{"-c", "-D", "pw", "u"}, "Error: -c and -D cannot be used together."},
		{"b and D", []string{"-b", "-D", "pw", "u", "p"}, "Error: -b and -D cannot be used together."},
		{"c and U", []string{"-c", "-U", "pw"}, "Error: -c and -U cannot be used together."},
		{"D and U", []string{"-D", "-U", "pw"}, "Error: -D and -U cannot be used together."},
		{"b and U", []string{"-b", "-U", "pw"}, "Error: -b and -U cannot be used together."},
		{"check and c", []string{"--check", "-c", "pw", "u"}, "Error: --check and -c cannot be used together."},
		{"check and D", []string{"--check", "-D", "pw", "u"}, "Error: --check and -D cannot be used together."},
		{"check and U", []string{"--check", "-U", "pw"}, "Error: --check and -U cannot be used together."},
		{"unknown hash", []string{"-H", "md5", "pw", "u"}, "Error: Unknown hash type 'md5'"},
		{"zero iterations", []string{"-I", "0", "pw", "u"}, "Error: Number of iterations must be > 0."},
		{"negative iterations", []string{"-I", "-1", "pw", "u"}, "Error: Number of iterations must be > 0."},
		{"extra argument", []string{"-b", "pw", "u", "p", "x"}, `Error: unexpected argument "x" (flags must come before FILE; quote a password with spaces)`},
		{"flag after file", []string{"pw", "u", "-c"}, `Error: unexpected argument "-c" (flags must come before FILE; quote a password with spaces)`},
		{"empty file name", []string{"-b", "", "u", "p"}, "Error: password file must not be empty (use - for stdout)."},
		{"colon", []string{"-b", "pw", "a:b", "p"}, "Error: Username must not contain the ':' character."},
		{"control", []string{"-b", "pw", "a\x01b", "p"}, "Error: Username must not contain control characters."},
		{"newline", []string{"pw", "a\nb"}, "Error: Username must not contain control characters."},
		{"long user", []string{"pw", strings.Repeat("u", 65536)}, "Error: Username must be less than 65536 characters long."},
		{"empty user", []string{"pw", ""}, "Error: Username must not be empty."},
		{"empty password", []string{"-b", "pw", "u", ""}, "Error: Empty password."},
		{"long password", []string{"-b", "pw", "u", strings.Repeat("p", 65536)}, "Error: Password must be less than 65536 characters long."},
		{"delete stdout", []string{"-D", "-", "u"}, "Error: -D cannot be used with - as the password file."},
		{"check stdin without b", []string{"--check", "-", "u"}, "Error: --check with - as the password file needs -b: stdin holds the file."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := iostreams.Test()
			err := runPasswdArgs(context.Background(), ios, func(context.Context, *Deps, *PasswdOptions) error {
				t.Fatal("run must not be reached")
				return nil
			}, tt.args...)
			require.Error(t, err)
			var ue *UsageError
			require.ErrorAs(t, err, &ue)
			require.Equal(t, "passwd", ue.Cmd)
			require.Equal(t, ExitFailure, exitCode(err))
			require.Equal(t, tt.want, message(err))
			require.Empty(t, out.String())
		})
	}
}

func TestRunPasswdTerminal(t *testing.T) {
	t.Run("create asks twice on stderr", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "pw")
		r := ttyRun(t, context.Background(), []string{"s3cret", "s3cret"}, "-c", p, "alice")
		require.NoError(t, r.err)
		require.Equal(t, "Password: \nReenter password: \n", r.stderr)
		require.Empty(t, r.stdout)
		require.True(t, verifies(t, p, "alice", "s3cret"))
	})
	t.Run("stdout file keeps prompts off stdout", func(t *testing.T) {
		r := ttyRun(t, context.Background(), []string{"x", "x"}, "-", "bob")
		require.NoError(t, r.err)
		require.Equal(t, "Password: \nReenter password: \n", r.stderr)
		require.Regexp(t, `^bob:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$`, r.stdout)
	})
	t.Run("mismatch exits 2 and keeps the file", func(t *testing.T) {
		p := writeFile(t, refLine, 0o600)
		r := ttyRun(t, context.Background(), []string{"one", "two"}, p, "alice")
		require.Equal(t, 2, r.code)
		require.Equal(t, "Error: Passwords do not match.", r.msg())
		require.Equal(t, refLine, readFile(t, p))
	})
	t.Run("empty password", func(t *testing.T) {
		p := writeFile(t, refLine, 0o600)
		r := ttyRun(t, context.Background(), []string{""}, p, "alice")
		require.Equal(t, 1, r.code)
		require.Equal(t, "Error: Empty password.", r.msg())
		require.Equal(t, "Password: \n", r.stderr, "no second prompt after an empty password")
		require.Equal(t, refLine, readFile(t, p))
	})
	t.Run("check asks once", func(t *testing.T) {
		p := writeFile(t, refLine, 0o600)
		r := ttyRun(t, context.Background(), []string{"secret"}, "--check", p, "alice")
		require.NoError(t, r.err)
		require.Equal(t, "Password: \n", r.stderr)
		r = ttyRun(t, context.Background(), []string{"wrong"}, "--check", p, "alice")
		require.Equal(t, 1, r.code)
		require.Equal(t, "Error: Password for user alice does not match.", r.msg())
	})
	t.Run("check unknown user does not prompt", func(t *testing.T) {
		p := writeFile(t, refLine, 0o600)
		r := ttyRun(t, context.Background(), nil, "--check", p, "bob")
		require.Equal(t, 1, r.code)
		require.Equal(t, "Error: User bob not found in password file.", r.msg())
		require.Empty(t, r.stderr)
	})
	t.Run("corrupt file is reported before the prompt", func(t *testing.T) {
		p := writeFile(t, "# users\n"+refLine, 0o600)
		r := ttyRun(t, context.Background(), nil, p, "bob")
		require.Equal(t, 1, r.code)
		require.Empty(t, r.stderr)
		require.Contains(t, r.msg(), "Error: Corrupt password file at line 1.")
	})
	t.Run("missing folder is reported before the prompt", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "nodir", "pw")
		r := ttyRun(t, context.Background(), nil, "-c", p, "bob")
		require.Equal(t, 1, r.code)
		require.Empty(t, r.stderr)
		require.Equal(t, "Error: Unable to open file "+p+" for writing. No such file or directory.", r.msg())
	})
	// The prompts below must not be reached: a regression fails with
	// status ExitInterrupted after a short wait instead of hanging.
	noPrompt := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("dangling link into a missing folder is reported before the prompt", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "pw")
		require.NoError(t, os.Symlink(filepath.Join("nodir", "pw"), p))
		r := ttyRun(t, noPrompt(t), nil, "-c", p, "bob")
		require.Equal(t, 1, r.code, r.msg())
		require.Empty(t, r.stderr)
		require.Equal(t, "Error: Unable to open file "+p+" for writing. No such file or directory.", r.msg())
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		require.Equal(t, fs.ModeSymlink, fi.Mode().Type(), "the link is kept")
	})
	t.Run("read-only file is reported before the prompt", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root may write every file")
		}
		p := writeFile(t, refLine, 0o400)
		r := ttyRun(t, noPrompt(t), nil, p, "bob")
		require.Equal(t, 1, r.code, r.msg())
		require.Empty(t, r.stderr)
		require.Equal(t, "Error: Unable to open file "+p+" for writing. Permission denied.", r.msg())
		require.Equal(t, refLine, readFile(t, p))
	})
	t.Run("read-only folder is reported before the prompt, naming the folder", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root may write in every folder")
		}
		p := writeFile(t, refLine, 0o600)
		dir := filepath.Dir(p)
		require.NoError(t, os.Chmod(dir, 0o500))
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		r := ttyRun(t, noPrompt(t), nil, p, "bob")
		require.Equal(t, 1, r.code, r.msg())
		require.Empty(t, r.stderr)
		require.Equal(t, "Error: Unable to write "+p+": cannot create a temporary file in "+dir+": permission denied.", r.msg())
		require.Equal(t, refLine, readFile(t, p))
	})
}

func TestRunPasswdInterrupted(t *testing.T) {
	t.Run("at the terminal prompt", func(t *testing.T) {
		p := writeFile(t, refLine, 0o600)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan passwdRun, 1)
		go func() { done <- ttyRun(t, ctx, nil, p, "alice") }()
		cancel()
		r := <-done
		require.Equal(t, ExitInterrupted, r.code)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Equal(t, refLine, readFile(t, p))
	})
	t.Run("reading a pipe that never ends", func(t *testing.T) {
		p := writeFile(t, refLine, 0o600)
		pr, pw := io.Pipe()
		defer pw.Close()
		ios, _, _, _ := iostreams.Test()
		ios.In = pr
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runPasswdArgs(ctx, ios, nil, p, "alice") }()
		cancel()
		err := <-done
		require.Equal(t, ExitInterrupted, exitCode(err))
		require.Equal(t, refLine, readFile(t, p))
	})
}

func TestRunPasswdPipe(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		code  int
		msg   string
		pw    string
	}{
		{"one line", "pw1\n", 0, "", "pw1"},
		{"one line without newline", "pw1", 0, "", "pw1"},
		{"crlf", "pw1\r\n", 0, "", "pw1"},
		{"two equal lines", "pw1\npw1\n", 0, "", "pw1"},
		{"two different lines", "pw1\npw2\n", 2, "Error: Passwords do not match.", ""},
		{"third line ignored", "pw1\npw1\nother\n", 0, "", "pw1"},
		{"spaces kept", " a b \n", 0, "", " a b "},
		{"empty input", "", 1, "Error: Empty password.", ""},
		{"empty line", "\npw\n", 1, "Error: Empty password.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, refLine, 0o600)
			r := pipeRun(t, tt.stdin, p, "bob")
			require.Equal(t, tt.code, r.code, r.msg())
			require.Equal(t, tt.msg, r.msg())
			require.Empty(t, r.stderr, "no prompt on a pipe")
			require.Empty(t, r.stdout)
			if tt.code != 0 {
				require.Equal(t, refLine, readFile(t, p))
				return
			}
			require.True(t, strings.HasPrefix(readFile(t, p), refLine))
			require.True(t, verifies(t, p, "bob", tt.pw))
			require.True(t, verifies(t, p, "alice", "secret"))
		})
	}
}

func TestRunPasswdFileModes(t *testing.T) {
	t.Run("new file is 0600", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "pw")
		r := pipeRun(t, "", "-c", "-b", p, "alice", "x")
		require.NoError(t, r.err)
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
		require.Empty(t, r.stderr)
	})
	for _, tt := range []struct {
		mode fs.FileMode
		warn string
	}{
		{0o600, ""},
		{0o640, "group"},
		{0o644, "world"},
	} {
		t.Run("existing "+tt.mode.String(), func(t *testing.T) {
			p := writeFile(t, refLine, tt.mode)
			r := pipeRun(t, "", "-b", p, "bob", "x")
			require.NoError(t, r.err)
			fi, err := os.Stat(p)
			require.NoError(t, err)
			require.Equal(t, tt.mode, fi.Mode().Perm())
			if tt.warn == "" {
				require.Empty(t, r.stderr)
				return
			}
			require.Equal(t, "Warning: File "+p+" has "+tt.warn+" readable permissions. Future versions will refuse to load this file. To fix this, use `chmod 0600 "+p+"`.\n", r.stderr)
		})
	}
	t.Run("create over an existing file keeps its mode", func(t *testing.T) {
		p := writeFile(t, refLine, 0o640)
		r := pipeRun(t, "", "-c", "-b", p, "bob", "x")
		require.NoError(t, r.err)
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
		require.NotContains(t, readFile(t, p), "alice")
		require.Contains(t, r.stderr, "group readable")
	})
}

// Every bad input leaves an existing file byte for byte as it was.
func TestRunPasswdBadInputKeepsFile(t *testing.T) {
	const corrupt = refLine + "# a comment\nbob:x\n"
	tests := []struct {
		name    string
		content string
		stdin   string
		args    func(p string) []string
		code    int
		msg     string
	}{
		{"colon in username", refLine, "", func(p string) []string { return []string{"-b", p, "a:b", "x"} }, 1, "Error: Username must not contain the ':' character."},
		{"control character", refLine, "", func(p string) []string { return []string{"-b", p, "a\x1bb", "x"} }, 1, "Error: Username must not contain control characters."},
		{"empty password", refLine, "", func(p string) []string { return []string{"-b", p, "bob", ""} }, 1, "Error: Empty password."},
		{"empty piped password", refLine, "\n", func(p string) []string { return []string{p, "bob"} }, 1, "Error: Empty password."},
		{"unknown hash type", refLine, "", func(p string) []string { return []string{"-H", "md5", "-b", p, "bob", "x"} }, 1, "Error: Unknown hash type 'md5'"},
		{"iterations below 1", refLine, "", func(p string) []string { return []string{"-I", "0", "-b", p, "bob", "x"} }, 1, "Error: Number of iterations must be > 0."},
		{"mismatch", refLine, "a\nb\n", func(p string) []string { return []string{p, "bob"} }, 2, "Error: Passwords do not match."},
		{"corrupt file: add", corrupt, "", func(p string) []string { return []string{"-b", p, "carol", "x"} }, 1,
			"Error: Corrupt password file at line 2. Every line must be user:hash (no comments or blank lines); %s was not changed."},
		{"corrupt file: update", corrupt, "", func(p string) []string { return []string{"-b", p, "alice", "x"} }, 1, "Corrupt password file at line 2."},
		{"corrupt file: delete", corrupt, "", func(p string) []string { return []string{"-D", p, "alice"} }, 1, "Corrupt password file at line 2."},
		{"corrupt file: upgrade", corrupt, "", func(p string) []string { return []string{"-U", p} }, 1, "Corrupt password file at line 2."},
		{"line without colon", refLine + "bob\n", "", func(p string) []string { return []string{"-b", p, "carol", "x"} }, 1, "Corrupt password file at line 2."},
		{"blank line", refLine + "\n", "", func(p string) []string { return []string{"-b", p, "carol", "x"} }, 1, "Corrupt password file at line 2."},
		{"delete unknown user", refLine, "", func(p string) []string { return []string{"-D", p, "zed"} }, 1, ""},
		{"c and D", refLine, "", func(p string) []string { return []string{"-c", "-D", p, "alice"} }, 1, "Error: -c and -D cannot be used together."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, tt.content, 0o600)
			r := pipeRun(t, tt.stdin, tt.args(p)...)
			require.Equal(t, tt.code, r.code)
			want := tt.msg
			if strings.Contains(want, "%s") {
				want = strings.Replace(want, "%s", p, 1)
				require.Equal(t, want, r.msg())
			} else {
				require.Contains(t, r.msg(), want)
			}
			require.Equal(t, tt.content, readFile(t, p), "file changed")
			require.Equal(t, []string{"pw"}, dirNames(t, filepath.Dir(p)), "temporary file left behind")
		})
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestRunPasswdDeleteUnknownWarns(t *testing.T) {
	p := writeFile(t, refLine, 0o600)
	r := pipeRun(t, "", "-D", p, "zed")
	require.Equal(t, 1, r.code)
	require.Equal(t, "Warning: User zed not found in password file.\n", r.stderr)
	require.Empty(t, r.msg(), "the warning is the only output")
}

func TestRunPasswdOpenErrors(t *testing.T) {
	dir := t.TempDir()
	r := pipeRun(t, "", "-b", filepath.Join(dir, "missing"), "bob", "x")
	require.Equal(t, 1, r.code)
	require.Equal(t, "Error: Unable to open password file "+filepath.Join(dir, "missing")+". No such file or directory.", r.msg())

	r = pipeRun(t, "", "-b", dir, "bob", "x")
	require.Equal(t, 1, r.code)
	require.Equal(t, "Error: Unable to open password file "+dir+". Is a directory.", r.msg())

	r = pipeRun(t, "", "-c", "-b", dir, "bob", "x")
	require.Equal(t, 1, r.code)
	require.Equal(t, "Error: Unable to open file "+dir+" for writing. Not a regular file.", r.msg())

	r = pipeRun(t, "", "--check", "-b", filepath.Join(dir, "missing"), "bob", "x")
	require.Equal(t, 1, r.code)
	require.Equal(t, "Error: Unable to open password file "+filepath.Join(dir, "missing")+". No such file or directory.", r.msg())
}

func TestRunPasswdUpgrade(t *testing.T) {
	p := writeFile(t, "frank:apple\n"+refLine+"gina:pear tree\n", 0o600)
	r := pipeRun(t, "", "-U", "-H", "sha512", p)
	require.NoError(t, r.err)
	require.Equal(t, "Warning: 1 entry is already hashed and left unchanged.\n", r.stderr)
	got := readFile(t, p)
	require.Contains(t, got, refLine, "hashes are not hashed again")
	require.Regexp(t, `(?m)^frank:\$6\$`, got)
	require.True(t, verifies(t, p, "frank", "apple"))
	require.True(t, verifies(t, p, "gina", "pear tree"))
	require.True(t, verifies(t, p, "alice", "secret"))

	// A second -U changes nothing.
	r = pipeRun(t, "", "-U", p)
	require.NoError(t, r.err)
	require.Equal(t, "Warning: 3 entries are already hashed and left unchanged.\n", r.stderr)
	require.Equal(t, got, readFile(t, p))

	// -U - filters stdin to stdout.
	r = pipeRun(t, "hal:plum\n", "-U", "-I", "5", "-")
	require.NoError(t, r.err)
	require.Regexp(t, `^hal:\$7\$5\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$`, r.stdout)
	r = pipeRun(t, "# x\n", "-U", "-")
	require.Equal(t, 1, r.code)
	require.Equal(t, "Error: Corrupt password file at line 1. Every line must be user:hash (no comments or blank lines); nothing was written.", r.msg())
}

func TestRunPasswdCheck(t *testing.T) {
	p := writeFile(t, "# comments are fine for the broker\n"+refLine+"carol:plain\n", 0o600)
	tests := []struct {
		name, stdin string
		args        []string
		code        int
		msg, stderr string
	}{
		{"match batch", "", []string{"-b", p, "alice", "secret"}, 0, "", ""},
		{"match pipe", "secret\n", []string{p, "alice"}, 0, "", ""},
		{"pipe reads one line only", "secret\nother\n", []string{p, "alice"}, 0, "", ""},
		{"mismatch", "", []string{"-b", p, "alice", "nope"}, 1, "Error: Password for user alice does not match.", ""},
		{"unknown user", "", []string{"-b", p, "zed", "x"}, 1, "Error: User zed not found in password file.", ""},
		{"broken hash", "", []string{"-b", p, "carol", "plain"}, 1, "Error: User carol not found in password file.",
			"Error: Invalid password hash type for user carol, removing entry.\n"},
		{"empty password never matches", "", []string{"-b", p, "alice", ""}, 1, "Error: Password for user alice does not match.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := pipeRun(t, tt.stdin, append([]string{"--check"}, tt.args...)...)
			require.Equal(t, tt.code, r.code)
			require.Equal(t, tt.msg, r.msg())
			require.Equal(t, tt.stderr, r.stderr)
			require.Empty(t, r.stdout)
		})
	}
	t.Run("file on stdin", func(t *testing.T) {
		r := pipeRun(t, refLine, "--check", "-b", "-", "alice", "secret")
		require.NoError(t, r.err)
	})
}

func TestRunPasswdStdout(t *testing.T) {
	r := pipeRun(t, "", "-b", "-H", "sha512", "-", "alice", "x")
	require.NoError(t, r.err)
	require.Regexp(t, `^alice:\$6\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$`, r.stdout)
	ok, err := passwd.Verify("x", strings.TrimSpace(strings.TrimPrefix(r.stdout, "alice:")))
	require.NoError(t, err)
	require.True(t, ok)
	require.NoFileExists(t, "-")
}

// The command is registered: Run reaches it and prints errors once.
func TestPasswdRegistered(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	code, out, errOut := run(t, "passwd", "-c", "-b", p, "alice", "secret")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.True(t, verifies(t, p, "alice", "secret"))

	code, _, errOut = run(t, "passwd", "-b", p, "a:b", "x")
	require.Equal(t, 1, code)
	require.Equal(t, "Error: Username must not contain the ':' character.\nUse 'mqtt passwd --help' to see usage.\n", errOut)

	code, _, errOut = run(t, "passwd", "-D", p, "zed")
	require.Equal(t, 1, code)
	require.Equal(t, "Warning: User zed not found in password file.\n", errOut)
}

func TestRunPasswdUpdateKeepsOtherLines(t *testing.T) {
	other := " zed : $6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw== \r\n"
	p := writeFile(t, other+refLine, 0o600)
	r := pipeRun(t, "", "-b", p, "alice", "new")
	require.NoError(t, r.err)
	got := readFile(t, p)
	require.True(t, strings.HasPrefix(got, other), "untouched line must be kept byte for byte: %q", got)
	require.Equal(t, 2, strings.Count(got, "\n"))
	require.True(t, verifies(t, p, "alice", "new"))
	require.True(t, verifies(t, p, "zed", "test"))
}
