// SPDX-License-Identifier: Apache-2.0

// Package logdest opens the broker's log destinations (mosquitto's
// log_dest, log_timestamp and log_timestamp_format): stderr, stdout,
// files that SIGHUP reopens after rotation, and $SYS/broker/log/... topics
// published through a Publisher once the broker runs.
package logdest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttkit/mqttkit/pkg/format"
)

// Dest is one mosquitto log_dest: "stderr", "stdout", "file" (with
// Path) or "topic" ($SYS/broker/log/...).
type Dest struct {
	Kind string
	Path string // for "file"
}

// Setup is where and how the broker logs: mosquitto's log_dest,
// log_timestamp and log_timestamp_format.
type Setup struct {
	// Dests are the destinations; nil means stderr, an empty non-nil
	// slice (log_dest none) means nowhere.
	Dests []Dest
	// NoTimestamp drops the time from each line (log_timestamp false).
	NoTimestamp bool
	// TimestampFormat is a strftime format for the time
	// (log_timestamp_format); "" keeps RFC 3339.
	TimestampFormat string
}

// Logging is an open Setup: its Logger writes to every destination.
type Logging struct {
	Logger *slog.Logger
	files  []*reopenFile
	topic  *topicSink
}

// Open opens the destinations of s (files are appended to and created
// when missing). stdout and stderr are the process's streams; level
// filters every destination.
func Open(s Setup, stdout, stderr io.Writer, level slog.Leveler) (*Logging, error) {
	dests := s.Dests
	if dests == nil {
		dests = []Dest{{Kind: "stderr"}}
	}
	lg := &Logging{}
	var writers []io.Writer
	for _, d := range dests {
		switch d.Kind {
		case "stderr":
			writers = append(writers, stderr)
		case "stdout":
			writers = append(writers, stdout)
		case "file":
			f := &reopenFile{path: d.Path}
			if err := f.open(); err != nil {
				lg.Close()
				return nil, err
			}
			lg.files = append(lg.files, f)
			writers = append(writers, f)
		case "topic":
			lg.topic = &topicSink{level: level, stamp: s.stamp}
		default:
			lg.Close()
			return nil, fmt.Errorf("log_dest %s is not supported", d.Kind)
		}
	}
	var hs []slog.Handler
	if len(writers) > 0 {
		opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 || a.Key != slog.TimeKey {
				return a
			}
			if s.NoTimestamp {
				return slog.Attr{}
			}
			if s.TimestampFormat != "" {
				return slog.String(slog.TimeKey, format.Strftime(s.TimestampFormat, a.Value.Time()))
			}
			return a
		}}
		hs = append(hs, slog.NewTextHandler(io.MultiWriter(writers...), opts))
	}
	if lg.topic != nil {
		hs = append(hs, &topicHandler{sink: lg.topic})
	}
	lg.Logger = slog.New(fanout(hs))
	return lg, nil
}

// stamp formats t for a line sent to a topic (mosquitto: "TIME: message").
func (s Setup) stamp(t time.Time) string {
	switch {
	case s.NoTimestamp:
		return ""
	case s.TimestampFormat != "":
		return format.Strftime(s.TimestampFormat, t) + ": "
	}
	return strconv.FormatInt(t.Unix(), 10) + ": "
}

// Publisher is where log_dest topic lines go: the running broker.
type Publisher interface {
	// Publish sends payload to topic as the broker itself does.
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// PublishTo starts sending log lines to $SYS/broker/log/<E|W|N|D> through
// p (log_dest topic); lines logged before are not sent.
func (lg *Logging) PublishTo(p Publisher) {
	if lg.topic != nil {
		lg.topic.pub.Store(&p)
	}
}

// Reopen closes and reopens the log files, for log rotation (SIGHUP, as
// mosquitto does). A file that cannot be reopened keeps its old handle.
func (lg *Logging) Reopen() error {
	var errs []string
	for _, f := range lg.files {
		if err := f.reopen(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Close closes the log files.
func (lg *Logging) Close() {
	for _, f := range lg.files {
		f.close()
	}
	if lg.topic != nil {
		lg.topic.pub.Store(nil)
	}
}

// reopenFile is a log file that SIGHUP can reopen after rotation.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (r *reopenFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("log_dest file: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (r *reopenFile) reopen() error { return r.open() }

func (r *reopenFile) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return len(p), nil
	}
	return r.f.Write(p)
}

// topicSink is where log_dest topic publishes: the broker, once running.
// A line logged while one is being published is dropped for the topic,
// so publishing can never loop.
type topicSink struct {
	level slog.Leveler
	stamp func(time.Time) string
	pub   atomic.Pointer[Publisher]
	busy  atomic.Bool
}

// topicHandler publishes each log line to $SYS/broker/log/<letter>, as
// mosquitto's log_dest topic: E error, W warning, N notice (our info), D
// debug.
type topicHandler struct {
	sink  *topicSink
	attrs []slog.Attr
	group string
}

func (h *topicHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.sink.pub.Load() != nil && l >= h.sink.level.Level()
}

func (h *topicHandler) Handle(_ context.Context, r slog.Record) error {
	p := h.sink.pub.Load()
	if p == nil || !h.sink.busy.CompareAndSwap(false, true) {
		return nil
	}
	defer h.sink.busy.Store(false)
	letter := "D"
	switch {
	case r.Level >= slog.LevelError:
		letter = "E"
	case r.Level >= slog.LevelWarn:
		letter = "W"
	case r.Level >= slog.LevelInfo:
		letter = "N"
	}
	var buf bytes.Buffer
	buf.WriteString(h.sink.stamp(r.Time))
	buf.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		if !a.Equal(slog.Attr{}) {
			key := a.Key
			if h.group != "" {
				key = h.group + "." + key
			}
			fmt.Fprintf(&buf, " %s=%s", key, strconv.Quote(a.Value.String()))
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	return (*p).Publish("$SYS/broker/log/"+letter, buf.Bytes(), false, 0)
}

func (h *topicHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &topicHandler{sink: h.sink, attrs: append(append([]slog.Attr{}, h.attrs...), as...), group: h.group}
}

func (h *topicHandler) WithGroup(name string) slog.Handler {
	return &topicHandler{sink: h.sink, attrs: h.attrs, group: name}
}

// fanout sends each record to every handler that wants it.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	n := make(fanout, len(f))
	for i, h := range f {
		n[i] = h.WithAttrs(as)
	}
	return n
}

func (f fanout) WithGroup(name string) slog.Handler {
	n := make(fanout, len(f))
	for i, h := range f {
		n[i] = h.WithGroup(name)
	}
	return n
}
