// SPDX-License-Identifier: Apache-2.0

// Package passwd reads, writes, hashes and verifies mosquitto password files.
//
// A password file holds one "username:hash" line per user. Hashes use the
// formats of mosquitto 2.0 (mosquitto_passwd):
//
//	$7$ITERATIONS$SALT$HASH   PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key (default, 101 iterations)
//	$6$SALT$HASH              SHA-512 over password||salt, 12-byte salt
//
// SALT and HASH are standard base64 with padding.
//
// Two readers exist because mosquitto has two:
//
//   - [Parse] is the strict parser of the mosquitto_passwd tool: every line
//     must be "user:field", anything else is a [*ParseError] naming the line.
//     The returned [File] keeps unchanged lines byte for byte, so editing one
//     user never rewrites the others.
//   - [ReadDB] and [LoadDB] are the broker's lenient reader: comments and
//     lines without ':' are skipped, entries with an unusable hash are dropped
//     with a [Warning] worded like mosquitto's log line.
//
// [WriteFile] replaces a file atomically (temporary file in the same folder,
// fsync, rename), with mode 0600 for new files and the old mode otherwise.
//
// The package knows nothing about flags, exit codes or standard streams.
package passwd
