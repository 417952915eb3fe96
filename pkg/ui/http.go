// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// web holds the page: the project's own HTML, CSS and JavaScript, served
// as they are (nothing is loaded from elsewhere, so the dashboard works
// without a network).
//
//go:embed web
var web embed.FS

// Handler returns the dashboard's HTTP handler:
//
//	GET  /             the page (and its /app.js and /style.css)
//	GET  /events       Server-Sent Events: "snapshot", then "update"s
//	POST /api/publish  JSON {topic, payload, qos, retain}: publish it
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", h.serveEvents)
	mux.HandleFunc("POST /api/publish", h.servePublish)
	mux.HandleFunc("GET /{file}", h.serveAsset)
	mux.HandleFunc("GET /{$}", h.serveAsset)
	return h.guard(mux)
}

// guard refuses requests a dashboard should not answer: a Host that is
// not a loopback name when the dashboard listens on loopback only (DNS
// rebinding), and a publish sent by another site's page.
func (h *Hub) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.o.LoopbackOnly && !loopbackHost(r.Host) {
			http.Error(w, "this dashboard answers only to localhost, 127.0.0.1 or [::1]", http.StatusMisdirectedRequest)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if origin := r.Header.Get("Origin"); origin != "" && !sameHost(origin, r.Host) {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return IsLoopback(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
}

// IsLoopback reports whether a host name or address (no port, no
// brackets) reaches this machine only: "localhost" or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameHost reports whether an Origin (scheme://host:port) is the host
// the request was sent to.
func sameHost(origin, host string) bool {
	_, rest, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(rest, host)
}

// asset names the embedded file served at /name.
func asset(name string) (string, bool) {
	switch name {
	case "", "index.html":
		return "index.html", true
	case "app.js", "style.css":
		return name, true
	}
	return "", false
}

func (h *Hub) serveAsset(w http.ResponseWriter, r *http.Request) {
	name, ok := asset(r.PathValue("file"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(web, "web/"+name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ext := name[strings.LastIndexByte(name, '.'):]
	w.Header().Set("Content-Type", mime.TypeByExtension(ext))
	w.Header().Set("Cache-Control", "no-cache")
	// The page runs only its own script and style, and talks only to
	// this server.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	_, _ = w.Write(b)
}

// writeTimeout bounds one write to a page: a browser that stopped
// reading is dropped instead of holding a goroutine.
const writeTimeout = 10 * time.Second

// heartbeat keeps idle event streams open through proxies and lets a
// dead connection be noticed.
const heartbeat = 15 * time.Second

func (h *Hub) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	p := h.addPage()
	defer h.removePage(p)

	send := func(kind string, data []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: ", kind); err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\n\n"); err != nil {
			return err
		}
		return rc.Flush()
	}
	sendSnapshot := func() (uint64, error) {
		seq, data, err := h.snapshot(p)
		if err != nil {
			return 0, err
		}
		return seq, send("snapshot", data)
	}
	// retry: the browser reconnects after 1 s when `mqtt ui` restarts.
	_, _ = io.WriteString(w, "retry: 1000\n\n")
	seen, err := sendSnapshot()
	if err != nil {
		return
	}
	ping := time.NewTicker(heartbeat)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case ev := <-p.ch:
			if h.needsResync(p) {
				// Updates were lost while this page was slow: drain what
				// is queued and start again from a snapshot.
				for len(p.ch) > 0 {
					<-p.ch
				}
				if seen, err = sendSnapshot(); err != nil {
					return
				}
				continue
			}
			if ev.seq <= seen {
				continue // already in the snapshot
			}
			seen = ev.seq
			if err := send("update", ev.data); err != nil {
				return
			}
		}
	}
}

// maxPublish bounds a publish request's body (JSON-escaped payload
// included).
const maxPublish = 1 << 20

// PublishRequest is the body of POST /api/publish.
type PublishRequest struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     int    `json:"qos"`
	Retain  bool   `json:"retain"`
}

func (h *Hub) servePublish(w http.ResponseWriter, r *http.Request) {
	reply := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	// A form on another site cannot send application/json without the
	// browser asking first (CORS), and this server never says yes.
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		reply(http.StatusUnsupportedMediaType, "send JSON (Content-Type: application/json)")
		return
	}
	var req PublishRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPublish))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		reply(http.StatusBadRequest, "bad request: "+err.Error())
		return
	}
	if req.Topic == "" {
		reply(http.StatusBadRequest, "the topic is empty")
		return
	}
	if err := client.ValidateTopic(req.Topic); err != nil {
		reply(http.StatusBadRequest, err.Error())
		return
	}
	if req.QoS < 0 || req.QoS > 2 {
		reply(http.StatusBadRequest, fmt.Sprintf("QoS must be 0, 1 or 2, not %d", req.QoS))
		return
	}
	if h.o.Publish == nil {
		reply(http.StatusNotImplemented, "this dashboard cannot publish")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := h.o.Publish(ctx, &client.Message{Topic: req.Topic, Payload: []byte(req.Payload), QoS: byte(req.QoS), Retain: req.Retain})
	if err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, client.ErrNotConnected) {
			code = http.StatusServiceUnavailable
		}
		reply(code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`+"\n")
}
