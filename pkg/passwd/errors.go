// SPDX-License-Identifier: Apache-2.0

package passwd

import "fmt"

// Error is an error whose text is the exact message mosquitto_passwd prints
// after "Error: ", so a command can print "Error: " + err.Error() and match
// mosquitto byte for byte.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// Validation errors, worded as mosquitto_passwd words them.
const (
	// ErrUsernameColon means the username contains ':'.
	ErrUsernameColon Error = "Username must not contain the ':' character."
	// ErrUsernameControl means the username contains a control character.
	ErrUsernameControl Error = "Username must not contain control characters."
	// ErrUsernameTooLong means the username has 65536 bytes or more.
	ErrUsernameTooLong Error = "Username must be less than 65536 characters long."
	// ErrUsernameEmpty means the username is empty (mosquitto_passwd accepts
	// it and writes a line it can no longer read; we refuse).
	ErrUsernameEmpty Error = "Username must not be empty."
	// ErrUsernameSpace means the username starts or ends with a space, which
	// every reader trims (not checked by mosquitto_passwd).
	ErrUsernameSpace Error = "Username must not start or end with a space."
	// ErrPasswordEmpty means the password is empty.
	ErrPasswordEmpty Error = "Empty password."
	// ErrPasswordTooLong means the password has 65536 bytes or more.
	ErrPasswordTooLong Error = "Password must be less than 65536 characters long."
	// ErrIterations means an iteration count below 1 was requested.
	ErrIterations Error = "Number of iterations must be > 0."
)

// UnknownHashTypeError reports a hash type other than "sha512" or
// "sha512-pbkdf2" (the value of mosquitto_passwd -H).
type UnknownHashTypeError struct {
	Type string // the type that was asked for
}

// Error returns mosquitto_passwd's wording: Unknown hash type 'md5'.
func (e *UnknownHashTypeError) Error() string {
	return fmt.Sprintf("Unknown hash type '%s'", e.Type)
}

// ParseError reports a line of a password file that is not "user:field".
type ParseError struct {
	Line int // 1-based line number
}

// Error returns mosquitto_passwd's wording: Corrupt password file at line N.
func (e *ParseError) Error() string {
	return fmt.Sprintf("Corrupt password file at line %d.", e.Line)
}

// HashError reports a password hash that cannot be decoded.
type HashError struct {
	Problem HashProblem // what is wrong
}

// Error describes the problem in one line.
func (e *HashError) Error() string {
	return "invalid password hash: " + e.Problem.String()
}

// HashProblem classifies what is wrong with a password hash, following the
// cases the mosquitto broker distinguishes when it loads a password file.
type HashProblem int

// The hash problems.
const (
	// ProblemType means the hash does not start with $6$ or $7$ (for
	// example a plain-text password).
	ProblemType HashProblem = iota + 1
	// ProblemFormat means the hash lacks a '$' field.
	ProblemFormat
	// ProblemIterations means the $7$ iteration count is not a number >= 1.
	ProblemIterations
	// ProblemSalt means the salt is not base64 of exactly 12 bytes.
	ProblemSalt
	// ProblemDigest means the hash is not base64 of exactly 64 bytes.
	ProblemDigest
)

// String describes the problem.
func (p HashProblem) String() string {
	switch p {
	case ProblemType:
		return "unknown type (want $6$ or $7$)"
	case ProblemFormat:
		return "missing '$' field (want $6$SALT$HASH or $7$ITERATIONS$SALT$HASH)"
	case ProblemIterations:
		return "iterations must be a number >= 1"
	case ProblemSalt:
		return "salt is not base64 of 12 bytes"
	case ProblemDigest:
		return "hash is not base64 of 64 bytes"
	}
	return "unknown problem"
}

// brokerMessage is the line the mosquitto broker logs for this problem
// when it drops the user from its password table.
func (p HashProblem) brokerMessage(user string) string {
	switch p {
	case ProblemType:
		return fmt.Sprintf("Error: Invalid password hash type for user %s, removing entry.", user)
	case ProblemIterations:
		return fmt.Sprintf("Error: Invalid hash iterations for user %s, removing entry.", user)
	case ProblemSalt:
		return fmt.Sprintf("Error: Unable to decode password salt for user %s, removing entry.", user)
	case ProblemDigest:
		return fmt.Sprintf("Error: Unable to decode password for user %s, removing entry.", user)
	}
	return fmt.Sprintf("Error: Invalid password hash for user %s, removing entry.", user)
}
