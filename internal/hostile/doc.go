// SPDX-License-Identifier: Apache-2.0

// Package hostile holds the hostile-clients suite: tests that attack the
// broker of pkg/broker over raw TCP (random bytes, truncated and oversized
// packets, protocol violations, slowloris, connection churn, subscribers
// that never read, floods) and check after each attack that a well-behaved
// client still gets its messages promptly and that goroutines and memory
// return to their baseline. It lives in its own package so that its
// goroutine and heap accounting sees no other package's tests.
package hostile
