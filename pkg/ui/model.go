// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"hash/fnv"
	"strconv"
	"time"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// Limits bound what the dashboard keeps, so that memory stays bounded
// whatever the broker sends. The page says when one is reached.
type Limits struct {
	Topics     int `json:"topics"`     // topics tracked; messages on others only reach the log
	Points     int `json:"points"`     // chart points kept per topic
	Payload    int `json:"payload"`    // bytes of rendered payload kept per topic (text, JSON or hex)
	Log        int `json:"log"`        // message log lines kept
	LogPerPush int `json:"logPerPush"` // log lines sent to the page per update; the rest are counted
	TopicName  int `json:"topicName"`  // bytes of a topic name shown
	Preview    int `json:"preview"`    // bytes of a payload shown in a log line
}

// DefaultLimits are the limits of `mqtt ui`.
func DefaultLimits() Limits {
	return Limits{Topics: 1000, Points: 300, Payload: 4096, Log: 500, LogPerPush: 100, TopicName: 512, Preview: 200}
}

// Point is one reading of a chart: Unix milliseconds and value.
type Point [2]float64

// Topic is what the dashboard knows about one topic.
type Topic struct {
	ID      int      `json:"id"`   // stable key for the page (names may be cut or repaired)
	Name    string   `json:"name"` // display name (valid UTF-8, maybe cut)
	Levels  []string `json:"levels"`
	Count   uint64   `json:"count"`
	First   int64    `json:"first"` // Unix ms of the first message
	Last    int64    `json:"last"`  // Unix ms of the last message
	Size    int      `json:"size"`  // bytes of the last payload
	Kind    string   `json:"kind"`
	Payload string   `json:"payload"`
	Cut     bool     `json:"cut,omitempty"` // Payload is the beginning of the rendering
	Retain  bool     `json:"retain"`
	QoS     byte     `json:"qos"`

	// Numbers: set once a payload of the topic carried a number.
	Field  string  `json:"field,omitempty"` // JSON field charted
	HasNum bool    `json:"hasNum"`
	NumOK  bool    `json:"numOK"` // the last payload carried a number
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Value  float64 `json:"value"` // last number
	Points []Point `json:"points"`

	fresh int // points added since the last update was built
}

// LogLine is one line of the message log.
type LogLine struct {
	Seq     uint64 `json:"seq"`
	Time    int64  `json:"time"`
	TopicID int    `json:"tid"` // 0: an untracked topic
	Topic   string `json:"topic"`
	Preview string `json:"preview"`
	Size    int    `json:"size"`
	QoS     byte   `json:"qos"`
	Retain  bool   `json:"retain"`
}

// State is the connection state shown on the page.
type State struct {
	Status string `json:"status"` // StatusConnecting, StatusConnected, StatusReconnecting, StatusRefused
	Detail string `json:"detail"` // why (an error), or what (broker, version)
	Broker string `json:"broker"`
	Since  int64  `json:"since"` // Unix ms
}

// Connection states.
const (
	StatusConnecting   = "connecting"
	StatusConnected    = "connected"
	StatusReconnecting = "reconnecting"
	StatusRefused      = "refused"
	StatusStopped      = "stopped"
)

// Caps says which limits were reached, for the page.
type Caps struct {
	Limits          Limits `json:"limits"`
	Untracked       uint64 `json:"untracked"`       // messages on topics past the topic limit
	LogDropped      uint64 `json:"logDropped"`      // log lines never sent to the page (too many at once)
	PayloadsCut     uint64 `json:"payloadsCut"`     // payloads shown cut
	Messages        uint64 `json:"messages"`        // messages received in all
	TopicsFull      bool   `json:"topicsFull"`      // the topic limit was reached
	LogFull         bool   `json:"logFull"`         // older log lines were dropped
	PointsTrimmed   bool   `json:"pointsTrimmed"`   // a chart lost its oldest points
	NumberedTopics  int    `json:"numberedTopics"`  // topics with a chart
	TrackedTopics   int    `json:"trackedTopics"`   // topics tracked
	LargestPayload  int    `json:"largestPayload"`  // bytes
	InvalidUTF8Seen bool   `json:"invalidUTF8Seen"` // a topic name was repaired
}

// Model is the dashboard's memory: topics, their readings and the
// message log, within Limits. It is not safe for concurrent use; the
// Hub serialises access.
type Model struct {
	lim    Limits
	topics map[string]*Topic // by key (see topicKey)
	order  []*Topic          // by ID
	log    []LogLine         // ring of lim.Log lines
	next   int               // where the next log line goes in log
	seq    uint64            // log lines ever added
	caps   Caps

	dirty   map[*Topic]bool
	newLog  []LogLine // lines since the last update, at most lim.LogPerPush (the last ones)
	skipped uint64    // lines since the last update that newLog lost
	changed bool      // anything to send
}

// NewModel returns an empty model; zero limits take the defaults.
func NewModel(lim Limits) *Model {
	def := DefaultLimits()
	for _, f := range []struct{ v, d *int }{{&lim.Topics, &def.Topics}, {&lim.Points, &def.Points},
		{&lim.Payload, &def.Payload}, {&lim.Log, &def.Log}, {&lim.LogPerPush, &def.LogPerPush},
		{&lim.TopicName, &def.TopicName}, {&lim.Preview, &def.Preview}} {
		if *f.v <= 0 {
			*f.v = *f.d
		}
	}
	return &Model{lim: lim, topics: map[string]*Topic{}, dirty: map[*Topic]bool{}, caps: Caps{Limits: lim}}
}

// topicKey is how a topic is found: its name, or for a name longer than
// the display limit, its beginning and a hash (so that memory per topic
// stays bounded).
func (m *Model) topicKey(t string) string {
	if len(t) <= m.lim.TopicName {
		return t
	}
	h := fnv.New64a()
	h.Write([]byte(t))
	return t[:m.lim.TopicName] + "\x00" + strconv.FormatUint(h.Sum64(), 16)
}

// analysis is what analyze found in a payload: done outside the Hub's
// lock, since it is the expensive part.
type analysis struct {
	Rendered Rendered
	Preview  string
	Num      float64
	Field    string
	NumOK    bool
}

// analyze renders a payload and looks for its number, preferring the
// JSON field the topic charted so far.
func (m *Model) analyze(payload []byte, prefer string) analysis {
	a := analysis{Rendered: Render(payload, m.lim.Payload), Preview: Preview(payload, m.lim.Preview)}
	a.Num, a.Field, a.NumOK = Number(payload, prefer)
	return a
}

// Add records a message received at now.
func (m *Model) Add(msg *client.Message, now time.Time) {
	m.add(msg, now, nil)
}

// add records msg; a, when not nil, is its analysis done beforehand
// (with the field the topic preferred then).
func (m *Model) add(msg *client.Message, now time.Time, a *analysis) {
	ms := now.UnixMilli()
	m.changed = true
	m.caps.Messages++
	if len(msg.Payload) > m.caps.LargestPayload {
		m.caps.LargestPayload = len(msg.Payload)
	}
	key := m.topicKey(msg.Topic)
	t := m.topics[key]
	if t == nil && len(m.order) < m.lim.Topics {
		name := displayTopic(msg.Topic, m.lim.TopicName)
		if name != msg.Topic && len(msg.Topic) <= m.lim.TopicName {
			m.caps.InvalidUTF8Seen = true
		}
		t = &Topic{ID: len(m.order) + 1, Name: name, Levels: Levels(name), First: ms}
		m.topics[key] = t
		m.order = append(m.order, t)
		m.caps.TrackedTopics = len(m.order)
		if len(m.order) == m.lim.Topics {
			m.caps.TopicsFull = true
		}
	}
	prefer := ""
	if t != nil {
		prefer = t.Field
	}
	if a == nil {
		an := m.analyze(msg.Payload, prefer)
		a = &an
	}
	line := LogLine{Time: ms, Preview: a.Preview, Size: len(msg.Payload), QoS: msg.QoS, Retain: msg.Retain}
	if t == nil {
		m.caps.Untracked++
		line.Topic = displayTopic(msg.Topic, m.lim.TopicName)
	} else {
		m.update(t, msg, ms, a)
		line.TopicID, line.Topic = t.ID, t.Name
	}
	if a.Rendered.Truncated {
		m.caps.PayloadsCut++
	}
	m.addLog(line)
}

func (m *Model) update(t *Topic, msg *client.Message, ms int64, a *analysis) {
	t.Count++
	t.Last = ms
	t.Size = len(msg.Payload)
	t.Kind, t.Payload, t.Cut = a.Rendered.Kind, a.Rendered.Text, a.Rendered.Truncated
	t.Retain, t.QoS = msg.Retain, msg.QoS
	// A topic charts one series: a number from another JSON field (or a
	// plain number after JSON) is not mixed into it.
	t.NumOK = a.NumOK && (!t.HasNum || a.Field == t.Field)
	if t.NumOK {
		v := a.Num
		if !t.HasNum {
			t.HasNum, t.Min, t.Max, t.Field = true, v, v, a.Field
			m.caps.NumberedTopics++
		}
		t.Min, t.Max, t.Value = min(t.Min, v), max(t.Max, v), v
		if len(t.Points) >= m.lim.Points {
			// Drop the oldest quarter at once, so that trimming is
			// not a copy per message.
			drop := max(1, m.lim.Points/4)
			t.Points = append(t.Points[:0], t.Points[drop:]...)
			m.caps.PointsTrimmed = true
		}
		t.Points = append(t.Points, Point{float64(ms), v})
		t.fresh = min(t.fresh+1, m.lim.Points)
	}
	m.dirty[t] = true
}

func (m *Model) addLog(l LogLine) {
	m.seq++
	l.Seq = m.seq
	if len(m.log) < m.lim.Log {
		m.log = append(m.log, l)
	} else {
		m.log[m.next] = l
		m.caps.LogFull = true
	}
	m.next = (m.next + 1) % m.lim.Log
	if len(m.newLog) >= m.lim.LogPerPush {
		// Keep the latest lines: shift out the oldest.
		copy(m.newLog, m.newLog[1:])
		m.newLog = m.newLog[:len(m.newLog)-1]
		m.skipped++
		m.caps.LogDropped++
	}
	m.newLog = append(m.newLog, l)
}

// Topic returns the topic with that name, or nil.
func (m *Model) Topic(name string) *Topic { return m.topics[m.topicKey(name)] }

// Topics returns the tracked topics in the order they appeared.
func (m *Model) Topics() []*Topic { return m.order }

// Log returns the kept log lines, oldest first.
func (m *Model) Log() []LogLine {
	if len(m.log) < m.lim.Log {
		return append([]LogLine(nil), m.log...)
	}
	return append(append([]LogLine(nil), m.log[m.next:]...), m.log[:m.next]...)
}

// Caps returns the limit counters.
func (m *Model) Caps() Caps { return m.caps }

// Snapshot is everything the page needs when it (re)connects.
type Snapshot struct {
	Seq    uint64    `json:"seq"`
	Now    int64     `json:"now"`
	Topics []*Topic  `json:"topics"`
	Log    []LogLine `json:"log"`
	State  State     `json:"state"`
	Caps   Caps      `json:"caps"`
}

// Update is what changed since the previous update: changed topics (with
// only their new chart points), new log lines and the caps.
type Update struct {
	Seq        uint64    `json:"seq"`
	Now        int64     `json:"now"`
	Topics     []Topic   `json:"topics"`
	Log        []LogLine `json:"log"`
	LogSkipped uint64    `json:"logSkipped"` // lines between updates that are not in Log
	Caps       Caps      `json:"caps"`
	State      *State    `json:"state,omitempty"`
}

// snapshot copies out the whole model (the topics are shared: it must be
// encoded before the model changes again).
func (m *Model) snapshot() ([]*Topic, []LogLine) { return m.order, m.Log() }

// takeUpdate returns the changes since the last call and forgets them,
// or false when nothing changed.
func (m *Model) takeUpdate() (Update, bool) {
	if !m.changed {
		return Update{}, false
	}
	u := Update{Log: m.newLog, LogSkipped: m.skipped, Caps: m.caps}
	u.Topics = make([]Topic, 0, len(m.dirty))
	for _, t := range m.order {
		if !m.dirty[t] {
			continue
		}
		c := *t
		c.Points = append([]Point(nil), t.Points[len(t.Points)-min(t.fresh, len(t.Points)):]...)
		t.fresh = 0
		u.Topics = append(u.Topics, c)
	}
	clear(m.dirty)
	m.newLog, m.skipped, m.changed = nil, 0, false
	return u, true
}
