// SPDX-License-Identifier: Apache-2.0

// Package faults holds the fault tests: they build the real mqtt binary,
// run `mqtt broker` as a child process, kill it with SIGKILL and restart it
// in the middle of traffic, and check that nothing the broker acknowledged
// is lost, that QoS 2 messages arrive exactly once, that messages from one
// publisher stay in order, and that `mqtt pub -l` and `mqtt sub` carry on
// through the restart. The guarantees are listed in docs/reliability.md.
package faults
