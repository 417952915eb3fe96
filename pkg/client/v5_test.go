// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
)

// TestV5ErrNamesWhyTheConnectionEnded: paho closes the connection before it
// reports the reason, so Err must wait for the reason instead of saying
// only "not connected".
func TestV5ErrNamesWhyTheConnectionEnded(t *testing.T) {
	b := testbroker.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, &Config{Host: b.Host, Port: b.Port, Version: V5, KeepAlive: 60, CleanStart: true}, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	select {
	case <-cl.Done():
	case <-ctx.Done():
		t.Fatal("connection did not end after the broker closed")
	}
	err = cl.Err()
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrNotConnected), "Err() = %v, want the reason the connection ended", err)
}

// TestV5ErrNilAfterDisconnect: our own DISCONNECT is not an error and does
// not wait for one.
func TestV5ErrNilAfterDisconnect(t *testing.T) {
	b := testbroker.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, &Config{Host: b.Host, Port: b.Port, Version: V5, KeepAlive: 60, CleanStart: true}, nil)
	require.NoError(t, err)
	require.NoError(t, cl.Disconnect(ctx))
	<-cl.Done()
	require.NoError(t, cl.Err())
}
