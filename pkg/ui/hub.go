// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// PublishFunc sends a message from the page's publish form to the broker.
type PublishFunc func(ctx context.Context, m *client.Message) error

// Options configure a Hub.
type Options struct {
	Limits  Limits
	Publish PublishFunc
	// Every is how often changes are pushed to the pages (default 200 ms):
	// a burst of messages becomes one update.
	Every time.Duration
	Now   func() time.Time
	Log   *slog.Logger
	// Title names the dashboard (the broker), in the page's title.
	Title string
	// LoopbackOnly makes the HTTP handler refuse requests whose Host is not
	// a loopback name or address: a page on another site cannot then reach
	// the dashboard through DNS rebinding.
	LoopbackOnly bool
}

// Hub keeps the model, takes messages from the MQTT client and pushes
// updates to every open page over Server-Sent Events.
type Hub struct {
	o Options

	mu    sync.Mutex
	model *Model
	state State
	// stateChanged: the state goes out with the next update.
	stateChanged bool
	seq          uint64 // updates built so far
	pages        map[*page]bool
}

// page is one open event stream.
type page struct {
	ch     chan event // updates, in order; never blocks the hub
	resync bool       // updates were dropped: send a snapshot next
}

type event struct {
	seq  uint64
	data []byte
}

// New returns a hub; Run must run for pages to get updates.
func New(o Options) *Hub {
	if o.Every <= 0 {
		o.Every = 200 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{o: o, model: NewModel(o.Limits), pages: map[*page]bool{}}
	h.state = State{Status: StatusConnecting, Since: o.Now().UnixMilli()}
	return h
}

// Add records a received message. It is called by the MQTT client for
// every message and returns quickly: rendering happens outside the lock
// and the pages are updated by Run.
func (h *Hub) Add(m *client.Message) {
	now := m.Time
	if now.IsZero() {
		now = h.o.Now()
	}
	h.mu.Lock()
	prefer := ""
	if t := h.model.Topic(m.Topic); t != nil {
		prefer = t.Field
	}
	h.mu.Unlock()
	a := h.model.analyze(m.Payload, prefer) // Limits never change: no lock needed
	h.mu.Lock()
	h.model.add(m, now, &a)
	h.mu.Unlock()
}

// SetState records the connection state; the pages show it with the next
// update.
func (h *Hub) SetState(s State) {
	if s.Since == 0 {
		s.Since = h.o.Now().UnixMilli()
	}
	h.mu.Lock()
	h.state = s
	h.stateChanged = true
	h.mu.Unlock()
}

// State returns the connection state.
func (h *Hub) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// Run pushes changes to the pages every Options.Every until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(h.o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.push()
		}
	}
}

// push builds one update and hands it to every page. A page whose queue
// is full (a slow or stalled browser) misses it and gets a snapshot
// instead once it catches up, so a page never holds more than its queue.
func (h *Hub) push() {
	h.mu.Lock()
	defer h.mu.Unlock()
	u, ok := h.model.takeUpdate()
	if !ok && !h.stateChanged {
		return
	}
	if !ok {
		u.Caps = h.model.caps
	}
	if u.Topics == nil {
		u.Topics = []Topic{}
	}
	if u.Log == nil {
		u.Log = []LogLine{}
	}
	if h.stateChanged {
		s := h.state
		u.State = &s
		h.stateChanged = false
	}
	h.seq++
	u.Seq = h.seq
	u.Now = h.o.Now().UnixMilli()
	data, err := json.Marshal(u)
	if err != nil {
		h.o.Log.Error("encode dashboard update", "err", err)
		return
	}
	for p := range h.pages {
		if p.resync {
			continue
		}
		select {
		case p.ch <- event{seq: u.Seq, data: data}:
		default:
			p.resync = true
		}
	}
}

// snapshot encodes the whole model for a page that (re)connects.
func (h *Hub) snapshot(p *page) (uint64, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	topics, log := h.model.snapshot()
	s := Snapshot{Seq: h.seq, Now: h.o.Now().UnixMilli(), Topics: topics, Log: log, State: h.state, Caps: h.model.caps}
	if s.Topics == nil {
		s.Topics = []*Topic{}
	}
	if s.Log == nil {
		s.Log = []LogLine{}
	}
	data, err := json.Marshal(s)
	if p != nil {
		p.resync = false
	}
	return s.Seq, data, err
}

func (h *Hub) addPage() *page {
	p := &page{ch: make(chan event, 8)}
	h.mu.Lock()
	h.pages[p] = true
	h.mu.Unlock()
	return p
}

func (h *Hub) removePage(p *page) {
	h.mu.Lock()
	delete(h.pages, p)
	h.mu.Unlock()
}

// needsResync reports whether p missed updates.
func (h *Hub) needsResync(p *page) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return p.resync
}

// Pages returns the number of open pages.
func (h *Hub) Pages() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pages)
}

// Caps returns the limit counters.
func (h *Hub) Caps() Caps {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.model.caps
}
