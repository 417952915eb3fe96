// SPDX-License-Identifier: Apache-2.0

//go:build unix

package cli

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCancelOnSignal: SIGTERM (as SIGINT) cancels the run's context, and
// the watcher returns, with its handler removed, once it did.
func TestCancelOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		cancelOnSignal(ctx, cancel, func() { close(ready) })
		close(done)
	}()
	<-ready
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGTERM))
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not return")
	}
}

// TestCancelOnSignalEnds: the watcher ends with the run, without a signal.
func TestCancelOnSignalEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		cancelOnSignal(ctx, cancel, nil)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not return")
	}
}
