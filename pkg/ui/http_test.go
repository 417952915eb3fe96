// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// sseReader reads Server-Sent Events from a stream.
type sseReader struct {
	r    *bufio.Reader
	body io.Closer
}

func openEvents(t *testing.T, url string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	t.Cleanup(func() { resp.Body.Close() })
	return &sseReader{r: bufio.NewReader(resp.Body), body: resp.Body}
}

// next returns the next event's type and data (comments and retry skipped).
func (s *sseReader) next(t *testing.T) (string, []byte) {
	t.Helper()
	kind := ""
	var data []byte
	for {
		line, err := s.r.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && kind != "":
			return kind, data
		case strings.HasPrefix(line, "event: "):
			kind = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = []byte(strings.TrimPrefix(line, "data: "))
		}
	}
}

func startHub(t *testing.T, o Options) (*Hub, *httptest.Server) {
	t.Helper()
	if o.Every == 0 {
		o.Every = 10 * time.Millisecond
	}
	h := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { h.Run(ctx) })
	srv := httptest.NewUnstartedServer(h.Handler())
	srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	srv.Start()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
	})
	return h, srv
}

func TestEventsSnapshotThenUpdates(t *testing.T) {
	h, srv := startHub(t, Options{})
	h.Add(msg("a/b", "1"))
	h.SetState(State{Status: StatusConnected, Broker: "localhost:1883"})
	// Wait until the first message went out as an update, so the
	// snapshot below is known to hold it.
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.stateChanged && !h.model.changed
	}, 10*time.Second, time.Millisecond)

	ev := openEvents(t, srv.URL)
	kind, data := ev.next(t)
	require.Equal(t, "snapshot", kind)
	var s Snapshot
	require.NoError(t, json.Unmarshal(data, &s))
	require.Len(t, s.Topics, 1)
	require.Equal(t, "a/b", s.Topics[0].Name)
	require.Equal(t, StatusConnected, s.State.Status)
	require.Len(t, s.Log, 1)

	h.Add(msg("a/c", "Temperature: 20.5°C"))
	kind, data = ev.next(t)
	require.Equal(t, "update", kind)
	var u Update
	require.NoError(t, json.Unmarshal(data, &u))
	require.Greater(t, u.Seq, s.Seq)
	require.Len(t, u.Topics, 1)
	require.Equal(t, "a/c", u.Topics[0].Name)
	require.Equal(t, 20.5, u.Topics[0].Value)
	require.Len(t, u.Log, 1)
	require.Nil(t, u.State, "the state goes out only when it changes")

	h.SetState(State{Status: StatusReconnecting, Detail: "connection lost"})
	kind, data = ev.next(t)
	require.Equal(t, "update", kind)
	require.NoError(t, json.Unmarshal(data, &u))
	require.Equal(t, StatusReconnecting, u.State.Status)
	require.Empty(t, u.Topics)
}

func TestSlowPageGetsSnapshot(t *testing.T) {
	h := New(Options{})
	p := h.addPage()
	for i := range 20 {
		h.Add(msg("t", itoa(i)))
		h.push()
	}
	require.True(t, h.needsResync(p), "a page whose queue filled up is marked")
	require.Len(t, p.ch, cap(p.ch), "and holds no more than its queue")
	seq, data, err := h.snapshot(p)
	require.NoError(t, err)
	require.False(t, h.needsResync(p))
	var s Snapshot
	require.NoError(t, json.Unmarshal(data, &s))
	require.Equal(t, uint64(20), s.Topics[0].Count)
	require.Equal(t, uint64(20), seq)
}

func TestAssets(t *testing.T) {
	_, srv := startHub(t, Options{})
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "javascript", "/style.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, resp.Header.Get("Content-Type"), ctype, path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
		require.NotEmpty(t, body)
		require.NotContains(t, string(body), "http://", "%s loads nothing from elsewhere", path)
		require.NotContains(t, string(body), "https://", "%s loads nothing from elsewhere", path)
	}
	resp, err := http.Get(srv.URL + "/nope.js")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestLoopbackOnly(t *testing.T) {
	_, srv := startHub(t, Options{LoopbackOnly: true})
	for host, want := range map[string]int{"localhost:1": 200, "127.0.0.1:1": 200, "[::1]:1": 200, "evil.example:1": 421, "192.168.1.2": 421} {
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, host)
	}
}

func TestPublish(t *testing.T) {
	var mu sync.Mutex
	var got []*client.Message
	fail := error(nil)
	_, srv := startHub(t, Options{Publish: func(_ context.Context, m *client.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if fail != nil {
			return fail
		}
		got = append(got, m)
		return nil
	}})
	post := func(body string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/api/publish", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := post(`{"topic":"a/b","payload":"hi","qos":1,"retain":true}`, nil)
	require.Equal(t, 200, code, body)
	require.Equal(t, []*client.Message{{Topic: "a/b", Payload: []byte("hi"), QoS: 1, Retain: true}}, got)

	for _, tc := range []struct{ body, want string }{
		{`{"topic":"","payload":"x"}`, "the topic is empty"},
		{`{"topic":"a/#","payload":"x"}`, "Invalid publish topic"},
		{`{"topic":"a","qos":3}`, "QoS must be 0, 1 or 2"},
		{`{"topic":"a","bogus":1}`, "unknown field"},
		{`not json`, "bad request"},
	} {
		code, body := post(tc.body, nil)
		require.Equal(t, 400, code, tc.body)
		require.Contains(t, body, tc.want, tc.body)
	}
	code, body = post(`{"topic":"a"}`, map[string]string{"Content-Type": "text/plain"})
	require.Equal(t, http.StatusUnsupportedMediaType, code, body)
	code, _ = post(`{"topic":"a"}`, map[string]string{"Origin": "http://evil.example"})
	require.Equal(t, http.StatusForbidden, code)
	code, _ = post(`{"topic":"a"}`, map[string]string{"Origin": srv.URL})
	require.Equal(t, 200, code)

	mu.Lock()
	fail = errors.New("not connected to the broker: " + client.ErrNotConnected.Error())
	fail = errors.Join(fail, client.ErrNotConnected)
	mu.Unlock()
	code, body = post(`{"topic":"a"}`, nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "not connected")
	require.Len(t, got, 2)
}
