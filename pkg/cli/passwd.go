// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/mqttkit/mqttkit/pkg/passwd"
)

// exitPasswdMismatch is mosquitto_passwd's status when the two passwords
// typed differ; scripts may test for it.
const exitPasswdMismatch = 2

// stdioFile is the FILE argument that means stdout (and stdin for -U).
const stdioFile = "-"

// PasswdOptions holds everything `mqtt passwd` needs once flags are parsed.
type PasswdOptions struct {
	Create     bool   // -c: start a new file, discarding an existing one
	Delete     bool   // -D: remove the user
	Batch      bool   // -b: the password is the last argument
	Upgrade    bool   // -U: hash every plain-text password of the file
	Check      bool   // --check: verify a password, change nothing
	HashType   string // -H: passwd.TypeSHA512PBKDF2 or passwd.TypeSHA512
	Iterations int    // -I: PBKDF2 iterations (0: mosquitto's default)

	File     string // password file, or "-" for stdout
	User     string // username (not with -U)
	Password string // with -b

	// readSecret reads one line without echo from the terminal fd; tests
	// replace it.
	readSecret func(ctx context.Context, fd int) (string, error)
}

func newPasswdCmd(d *Deps, runF func(context.Context, *Deps, *PasswdOptions) error) *cli.Command {
	o := &PasswdOptions{readSecret: readNoEcho}
	return &cli.Command{
		Name:  "passwd",
		Usage: "manage mosquitto password files (like mosquitto_passwd)",
		Description: `mqtt passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] FILE USERNAME
mqtt passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b FILE USERNAME PASSWORD
mqtt passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] -U FILE
mqtt passwd --check [-b] FILE USERNAME [PASSWORD]

Flags go before FILE. FILE "-" writes the result to stdout (with -U it also
reads stdin). Without -b the password is asked twice on a terminal, without
echo; from a pipe one line is read, and a second line, if any, must match.
--check exits 0 when the password matches and 1 when it does not.`,
		UsageText: `mqtt passwd -c /etc/mosquitto/passwd alice
mqtt passwd -b /etc/mosquitto/passwd bob 's3cret'
printf '%s\n' "$PW" | mqtt passwd - carol >> users.txt
mqtt passwd --check /etc/mosquitto/passwd alice`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "create", Aliases: []string{"c"}, Destination: &o.Create, Usage: "create a new password file; an existing file is replaced"},
			&cli.BoolFlag{Name: "delete", Aliases: []string{"D"}, Destination: &o.Delete, Usage: "delete the user rather than adding or updating its password"},
			&cli.BoolFlag{Name: "batch", Aliases: []string{"b"}, Destination: &o.Batch, Usage: "take the password from the command line (visible to other users)"},
			&cli.BoolFlag{Name: "update", Aliases: []string{"U"}, Destination: &o.Upgrade, Usage: "hash the plain-text passwords of a file in place"},
			&cli.StringFlag{Name: "hash", Aliases: []string{"H"}, Value: passwd.TypeSHA512PBKDF2, Destination: &o.HashType, Usage: "hash algorithm: sha512-pbkdf2 or sha512 (mosquitto 1.6)"},
			&cli.IntFlag{Name: "iterations", Aliases: []string{"I"}, Destination: &o.Iterations, DefaultText: "101", Usage: "PBKDF2 iterations"},
			&cli.BoolFlag{Name: "check", Destination: &o.Check, Usage: "verify USERNAME's password: exit 0 if it matches, 1 if not"},
		},
		Action: func(c *cli.Context) error {
			if err := o.complete(c); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runPasswd(c.Context, d, o)
		},
	}
}

// complete checks the flag combination and the positional arguments the
// way mosquitto_passwd does, with its messages.
func (o *PasswdOptions) complete(c *cli.Context) error {
	pairs := []struct {
		a, b         bool
		flagA, flagB string
	}{
		{o.Create, o.Delete, "-c", "-D"},
		{o.Batch, o.Delete, "-b", "-D"},
		{o.Create, o.Upgrade, "-c", "-U"},
		{o.Delete, o.Upgrade, "-D", "-U"},
		{o.Batch, o.Upgrade, "-b", "-U"},
		{o.Check, o.Create, "--check", "-c"},
		{o.Check, o.Delete, "--check", "-D"},
		{o.Check, o.Upgrade, "--check", "-U"},
	}
	for _, p := range pairs {
		if p.a && p.b {
			return usageErrorf("%s and %s cannot be used together.", p.flagA, p.flagB)
		}
	}
	if o.HashType != passwd.TypeSHA512PBKDF2 && o.HashType != passwd.TypeSHA512 {
		return &UsageError{Err: &passwd.UnknownHashTypeError{Type: o.HashType}}
	}
	if c.IsSet("iterations") && o.Iterations < 1 {
		return &UsageError{Err: passwd.ErrIterations}
	}

	args := c.Args().Slice()
	want, missing := 2, "password file or username missing."
	switch {
	case o.Upgrade:
		want, missing = 1, "password file missing."
	case o.Batch:
		want, missing = 3, "password file, username, or password missing."
	}
	if len(args) < want {
		flag := ""
		switch {
		case o.Upgrade:
			flag = "-U"
		case o.Delete:
			flag = "-D"
		case o.Check:
			flag = "--check"
		case o.Create:
			flag = "-c"
		case o.Batch:
			flag = "-b"
		}
		if flag == "" {
			return usageErrorf("Password file or username missing.")
		}
		return usageErrorf("%s argument given but %s", flag, missing)
	}
	if len(args) > want {
		return usageErrorf("unexpected argument %q (flags must come before FILE; quote a password with spaces)", args[want])
	}
	o.File = args[0]
	if o.File == "" {
		return usageErrorf("password file must not be empty (use - for stdout).")
	}
	if !o.Upgrade {
		o.User = args[1]
	}
	if o.Batch {
		o.Password = args[2]
	}
	if o.File == stdioFile && o.Delete {
		return usageErrorf("-D cannot be used with - as the password file.")
	}
	if o.File == stdioFile && o.Check && !o.Batch {
		return usageErrorf("--check with - as the password file needs -b: stdin holds the file.")
	}
	if !o.Upgrade && !o.Check {
		if err := passwd.ValidateUsername(o.User); err != nil {
			return &UsageError{Err: err}
		}
	}
	if o.Batch && !o.Check {
		if err := passwd.ValidatePassword(o.Password); err != nil {
			return &UsageError{Err: err}
		}
	}
	return nil
}

func (o *PasswdOptions) hashOptions() passwd.HashOptions {
	return passwd.HashOptions{Type: o.HashType, Iterations: o.Iterations}
}

// runPasswd carries out one mqtt passwd invocation. The file is read and
// checked before any prompt, and written only once everything succeeded.
func runPasswd(ctx context.Context, d *Deps, o *PasswdOptions) error {
	switch {
	case o.Check:
		return runPasswdCheck(ctx, d, o)
	case o.Upgrade:
		return runPasswdUpgrade(ctx, d, o)
	case o.Delete:
		return runPasswdDelete(ctx, d, o)
	}

	var f *passwd.File
	var old fs.FileInfo
	switch {
	case o.File == stdioFile:
		f = &passwd.File{}
	case o.Create:
		f = &passwd.File{}
		old, _ = os.Stat(o.File)
	default:
		var err error
		if f, old, err = readPasswdFile(o.File); err != nil {
			return err
		}
	}
	if o.File != stdioFile {
		// Do not ask for a password that cannot be stored.
		if err := passwd.CheckWritable(o.File); err != nil {
			return writeError(o.File, err)
		}
	}
	pw := o.Password
	if !o.Batch {
		var err error
		if pw, err = askPassword(ctx, d, o, true); err != nil {
			return err
		}
	}
	hash, err := passwd.Hash(pw, o.hashOptions())
	if err != nil {
		return err
	}
	f.Set(o.User, hash)
	return writePasswdFile(ctx, d, o.File, f.Bytes(), old)
}

// runPasswdDelete removes a user; an unknown user is mosquitto's warning
// and status 1, with the file untouched.
func runPasswdDelete(ctx context.Context, d *Deps, o *PasswdOptions) error {
	f, old, err := readPasswdFile(o.File)
	if err != nil {
		return err
	}
	if !f.Delete(o.User) {
		fmt.Fprintf(d.IO.ErrOut, "Warning: User %s not found in password file.\n", o.User)
		return &ExitError{Code: ExitFailure, Silent: true}
	}
	return writePasswdFile(ctx, d, o.File, f.Bytes(), old)
}

// runPasswdUpgrade hashes plain-text passwords in place (-U). Unlike
// mosquitto_passwd, fields that already are valid hashes are left alone,
// so running -U twice does not lock everybody out.
func runPasswdUpgrade(ctx context.Context, d *Deps, o *PasswdOptions) error {
	var f *passwd.File
	var old fs.FileInfo
	var err error
	if o.File == stdioFile {
		f, err = passwd.Parse(d.IO.In)
		if err != nil {
			return describeParseError(err, "")
		}
	} else if f, old, err = readPasswdFile(o.File); err != nil {
		return err
	}
	kept := 0
	err = f.Rehash(func(field string) (string, error) {
		if passwd.CheckHash(field) == nil {
			kept++
			return field, nil
		}
		return passwd.Hash(field, o.hashOptions())
	})
	if err != nil {
		return err
	}
	if kept > 0 {
		fmt.Fprintf(d.IO.ErrOut, "Warning: %d %s already hashed and left unchanged.\n", kept, plural(kept, "entry is", "entries are"))
	}
	return writePasswdFile(ctx, d, o.File, f.Bytes(), old)
}

// runPasswdCheck verifies a password the way the broker would: it reads
// the file leniently and reports the broker's warnings for this user.
func runPasswdCheck(ctx context.Context, d *Deps, o *PasswdOptions) error {
	var db *passwd.DB
	var warns []passwd.Warning
	var err error
	if o.File == stdioFile {
		db, warns, err = passwd.ReadDB(d.IO.In, "-")
	} else {
		db, warns, err = passwd.LoadDB(o.File)
	}
	if err != nil {
		return openError("Unable to open password file %s. %s.", o.File, err)
	}
	for _, w := range warns {
		if w.User == o.User {
			fmt.Fprintln(d.IO.ErrOut, w.Msg)
		}
	}
	if _, ok := db.Lookup(o.User); !ok {
		return passwd.Error(fmt.Sprintf("User %s not found in password file.", o.User))
	}
	pw := o.Password
	if !o.Batch {
		if pw, err = askPassword(ctx, d, o, false); err != nil {
			return err
		}
	}
	if !db.Authenticate(o.User, pw) {
		return passwd.Error(fmt.Sprintf("Password for user %s does not match.", o.User))
	}
	return nil
}

// readPasswdFile reads an existing file with the strict parser and returns
// its FileInfo.
func readPasswdFile(path string) (*passwd.File, fs.FileInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, openError("Unable to open password file %s. %s.", path, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, openError("Unable to open password file %s. %s.", path, syscall.EISDIR)
	}
	f, err := passwd.Parse(fh)
	if err != nil {
		return nil, nil, describeParseError(err, path)
	}
	return f, fi, nil
}

// describeParseError keeps mosquitto's "Corrupt password file at line N."
// and adds what we do differently: nothing was written. name is the file,
// "" for stdin.
func describeParseError(err error, name string) error {
	var pe *passwd.ParseError
	if errors.As(err, &pe) {
		outcome := name + " was not changed"
		if name == "" {
			outcome = "nothing was written"
		}
		return passwd.Error(fmt.Sprintf("%s Every line must be user:hash (no comments or blank lines); %s.", pe.Error(), outcome))
	}
	return fmt.Errorf("read %s: %w", name, err)
}

// writePasswdFile writes data to stdout for "-", else atomically to path,
// then warns when the file can be read by other users, or by root only.
func writePasswdFile(ctx context.Context, d *Deps, path string, data []byte, old fs.FileInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if path == stdioFile {
		_, err := d.IO.Out.Write(data)
		return err
	}
	if err := passwd.WriteFile(path, data); err != nil {
		return writeError(path, err)
	}
	if old != nil {
		if w := passwd.ModeWarning(path, old.Mode()); w != "" {
			fmt.Fprintln(d.IO.ErrOut, w)
		}
	}
	if fi, err := os.Stat(path); err == nil {
		if w := passwd.OwnerWarning(path, fi); w != "" {
			fmt.Fprintln(d.IO.ErrOut, w)
		}
	}
	return nil
}

// writeError words an error of passwd.WriteFile or passwd.CheckWritable:
// mosquitto_passwd's wording for a plain system error about the file, the
// whole story otherwise (a folder without write permission, a file that
// could only be rewritten in place).
func writeError(path string, err error) error {
	switch err.(type) {
	case *fs.PathError, *os.LinkError, *os.SyscallError, syscall.Errno:
		return openError("Unable to open file %s for writing. %s.", path, err)
	}
	return passwd.Error(fmt.Sprintf("Unable to write %s: %v.", path, err))
}

// openError words a file error like mosquitto_passwd: the path, then the
// C library's description of the errno ("No such file or directory").
func openError(format, path string, err error) error {
	var errno syscall.Errno
	msg := err.Error()
	if errors.As(err, &errno) {
		msg = errno.Error()
	} else {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
	}
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return passwd.Error(fmt.Sprintf(format, path, strings.TrimSuffix(msg, ".")))
}

// askPassword gets the password when it is not on the command line. On a
// terminal it prompts on stderr (stdout may carry the file) without echo,
// twice when twice is set. From a pipe it reads one line without a prompt;
// when a second line follows, as in mosquitto's `printf 'pw\npw\n' |`
// idiom, it must match.
func askPassword(ctx context.Context, d *Deps, o *PasswdOptions, twice bool) (string, error) {
	if d.IO.InTTY {
		fmt.Fprint(d.IO.ErrOut, "Password: ")
		pw, err := o.readSecret(ctx, d.IO.InFd)
		fmt.Fprintln(d.IO.ErrOut)
		if err != nil {
			return "", err
		}
		if err := passwd.ValidatePassword(pw); err != nil {
			return "", err
		}
		if !twice {
			return pw, nil
		}
		fmt.Fprint(d.IO.ErrOut, "Reenter password: ")
		again, err := o.readSecret(ctx, d.IO.InFd)
		fmt.Fprintln(d.IO.ErrOut)
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", mismatch()
		}
		return pw, nil
	}

	n := 1
	if twice {
		n = 2
	}
	lines, err := readLines(ctx, d.IO.In, n)
	if err != nil {
		return "", err
	}
	pw := ""
	if len(lines) > 0 {
		pw = lines[0]
	}
	if err := passwd.ValidatePassword(pw); err != nil {
		return "", err
	}
	if len(lines) > 1 && lines[1] != pw {
		return "", mismatch()
	}
	return pw, nil
}

func mismatch() error {
	return &ExitError{Code: exitPasswdMismatch, Err: passwd.Error("Passwords do not match.")}
}

// readLines reads up to n lines from r, each without "\r\n", stopping at
// EOF. It returns when ctx is cancelled even if r blocks.
func readLines(ctx context.Context, r io.Reader, n int) ([]string, error) {
	type result struct {
		lines []string
		err   error
	}
	ch := make(chan result, 1)
	go func() { // may outlive an interrupted command; the process then exits
		br := bufio.NewReader(r)
		var res result
		for range n {
			line, err := br.ReadBytes('\n')
			if len(line) == 0 && err != nil {
				if !errors.Is(err, io.EOF) {
					res.err = err
				}
				break
			}
			res.lines = append(res.lines, string(bytes.TrimRight(line, "\r\n")))
			if err != nil {
				break
			}
		}
		ch <- res
	}()
	select {
	case res := <-ch:
		return res.lines, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readNoEcho reads one line from the terminal fd with echo off. If ctx is
// cancelled (Ctrl-C) it restores the terminal and returns at once.
func readNoEcho(ctx context.Context, fd int) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() { // may outlive an interrupted command; the process then exits
		b, err := term.ReadPassword(fd)
		ch <- result{b, err}
	}()
	select {
	case res := <-ch:
		return strings.TrimRight(string(res.b), "\r\n"), res.err
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		return "", ctx.Err()
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
