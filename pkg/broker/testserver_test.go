// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"log/slog"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/stretchr/testify/require"
)

// serveOn adds to srv, before its Serve, a listener built like the
// broker's own (bindListener: CONNECT deadline, non-blocking writes,
// packet checks) on l, and returns its address. Tests of a bare mochi server use
// it rather than mochi's listeners.NewTCP, whose Close read-locks mochi's
// client table twice and hangs for good when a client is added or removed
// in between (seen: TestSecurityAuthentication stuck in Close).
func serveOn(t testing.TB, srv *mqtt.Server, id string, l Listener) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	bd, err := bindListener(id, l, 0, log)
	require.NoError(t, err)
	bd.conn.disconnect = func(id string) { disconnectClients(srv, id) }
	bd.conn.set, bd.conn.srv, bd.conn.stats = newConnSet(0, log), srv, new(wireStats)
	bd.conn.wire = &wireGuard{log: log, stats: bd.conn.stats}
	require.NoError(t, srv.AddListener(bd.conn))
	return bd.info.Addr
}

// waitOffline waits until the connection of client id has ended and mochi
// keeps its session (the client is in the table, closed): a message
// published from now on is queued for the session, not for the old
// connection.
func waitOffline(t testing.TB, srv *mqtt.Server, id string) {
	t.Helper()
	rawclient.WaitFor(t, func() bool { cl, ok := srv.Clients.Get(id); return ok && cl.Closed() })
}
